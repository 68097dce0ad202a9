"""The `redraft` command line. Errors are one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each offending field, e.g. `messages.0.role: Input should be ...`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def fail(message: str, code: int) -> int:
    print(f"redraft: {message}", file=sys.stderr)
    return code


def read_json(source: str) -> object:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text)


def cmd_refine(args: argparse.Namespace) -> int:
    from redraft.config import RefinerConfig
    from redraft.errors import RefineError
    from redraft.refiner import Refiner

    try:
        data = read_json(args.input)
    except OSError as exc:
        return fail(f"cannot read {args.input}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    except json.JSONDecodeError as exc:
        return fail(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", EXIT_BAD_INPUT
        )
    try:
        config = RefinerConfig(
            **({"strategy": args.strategy} if args.strategy else {}),
            **({"planner": args.planner} if args.planner else {}),
        )
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    refiner = Refiner(config)
    try:
        if not isinstance(data, dict):
            return fail("the request must be a JSON object", EXIT_BAD_INPUT)
        request = refiner.validate(data)
        result = asyncio.run(_refine_and_close(refiner, request))
    except ValidationError as exc:
        return fail(f"invalid request: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    except RefineError as exc:
        return fail(str(exc), EXIT_FAILED)
    print(result.model_dump_json(indent=2))
    return 0


async def _refine_and_close(refiner, request):
    async with refiner:
        return await refiner.arefine(request)


def cmd_demo(args: argparse.Namespace) -> int:
    from redraft.demo import run_demo

    return run_demo()


def cmd_chat(args: argparse.Namespace) -> int:
    from redraft.playground import run_chat

    return run_chat()


def cmd_graph(args: argparse.Namespace) -> int:
    from redraft.graphs.refine import build_graph

    print(build_graph().get_graph().draw_mermaid(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redraft", description="Refine chatbot replies before the user sees them."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    refine = commands.add_parser("refine", help="refine one turn: RefineRequest JSON → result JSON")
    refine.add_argument("input", nargs="?", default="-", help="request file (default: stdin)")
    refine.add_argument("--strategy", choices=["parallel", "sequential", "self_refine", "none"])
    refine.add_argument("--planner", choices=["llm", "all"])
    refine.set_defaults(run=cmd_refine)

    demo = commands.add_parser("demo", help="offline walk-through with a scripted model")
    demo.set_defaults(run=cmd_demo)

    chat = commands.add_parser("chat", help="interactive playground")
    chat.set_defaults(run=cmd_chat)

    graph = commands.add_parser("graph", help="print the refinement graph as mermaid")
    graph.set_defaults(run=cmd_graph)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
