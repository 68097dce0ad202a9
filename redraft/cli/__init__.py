"""The `redraft` command line. Errors are one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from redraft.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail, read_json, shown, warn
from redraft.errors import describe_os_error, describe_validation_error
from redraft.parsing import JSONLimitError, printable


def cmd_refine(args: argparse.Namespace) -> int:
    from redraft.config import RefinerConfig
    from redraft.errors import RefineError
    from redraft.refiner import Refiner

    try:
        data = read_json(args.input)
    except OSError as exc:
        return fail(f"cannot read {args.input}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    except UnicodeDecodeError as exc:
        return fail(f"{args.input} is not UTF-8 text (byte {exc.start})", EXIT_BAD_INPUT)
    except json.JSONDecodeError as exc:
        return fail(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", EXIT_BAD_INPUT
        )
    except JSONLimitError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
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
        asyncio.run(_refine_and_close(refiner, request))
    except ValidationError as exc:
        return fail(f"invalid request: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    except RefineError as exc:
        return fail(str(exc), EXIT_FAILED)
    return 0


async def _refine_and_close(refiner, request):
    async with refiner:
        result = await refiner.arefine(request)
        # The result is out before closing, which first finishes background memory work.
        print(result.model_dump_json(indent=2), flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from redraft.cli.demo import run_demo

    return run_demo()


def cmd_chat(args: argparse.Namespace) -> int:
    from redraft.cli.chat import run_chat

    return run_chat()


def cmd_graph(args: argparse.Namespace) -> int:
    from redraft.graphs.refine import build_graph

    print(build_graph().get_graph().draw_mermaid(), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from redraft.config import RefinerConfig, ServerConfig
    from redraft.server import serve

    try:
        flags: dict[str, Any] = {"workers": args.workers} if args.workers is not None else {}
        if args.no_preload:
            flags["preload"] = False
        config, server = RefinerConfig(), ServerConfig(**flags)
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    try:
        serve(config, server, host=args.host, port=args.port)
    except ValueError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", EXIT_FAILED)
    return 0


def cmd_kb_add(args: argparse.Namespace) -> int:
    from redraft.config import RefinerConfig
    from redraft.knowledge.base import KnowledgeBaseError, collect_files, open_for_adding

    try:
        config = RefinerConfig()
        collect_files(args.paths)  # every path must exist before anything is written
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    except FileNotFoundError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        kb, moved = open_for_adding(config)
        if moved:
            warn(
                f"the knowledge base index was corrupt: moved it to {moved} and started a new "
                "one; add the files it held again"
            )
        report = kb.add(
            args.paths,
            on_file=lambda path, outcome: print(f"{shown(path)}: {printable(outcome)}"),
        )
    except (KnowledgeBaseError, RuntimeError, OSError) as exc:
        return fail(str(exc), EXIT_FAILED)
    for path, reason in report.skipped:
        warn(f"skipped {shown(path)}: {printable(reason)}")
    print(
        f"indexed {len(report.added)} file(s), {report.chunks} chunks; "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped "
        f"→ {kb.store.location}"
    )
    return 0


def cmd_kb_search(args: argparse.Namespace) -> int:
    from redraft.config import RefinerConfig
    from redraft.knowledge.base import KnowledgeBase, KnowledgeBaseError

    if not args.query.strip():
        return fail("the query must not be empty", EXIT_BAD_INPUT)
    if args.k < 1:
        return fail("-k must be at least 1", EXIT_BAD_INPUT)
    try:
        config = RefinerConfig()
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    try:
        kb = KnowledgeBase.from_config(config)
        kb.check()
        hits = kb.search(args.query, args.k, args.mode)
    except (KnowledgeBaseError, RuntimeError, OSError) as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        print(json.dumps([hit.__dict__ for hit in hits], indent=2, ensure_ascii=False))
        return 0
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        print(f"{rank}. {shown(hit.source)} #{hit.chunk}  (score {hit.score:.4f})")
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
    if not hits:
        print("no matching passages")
    return 0


def cmd_safety_build_paths(args: argparse.Namespace) -> int:
    from redraft.cli.safety import cmd_build_paths

    return cmd_build_paths(args)


def cmd_route(args: argparse.Namespace) -> int:
    from redraft.cli.route import cmd_route as route

    return route(args)


def cmd_persona(args: argparse.Namespace) -> int:
    from redraft.cli.persona import run_persona_command

    return run_persona_command(args)


def cmd_bench(args: argparse.Namespace) -> int:
    """`python -m benchmarks` with these arguments, in the source checkout that holds them
    (the benchmarks are not part of the installed package)."""
    import subprocess

    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "benchmarks" / "__main__.py").is_file():
        return fail(
            "`redraft bench` runs from a source checkout of redraft (no benchmarks/ next to "
            f"the package in {checkout})",
            EXIT_BAD_INPUT,
        )
    return subprocess.call([sys.executable, "-m", "benchmarks", *args.bench_args], cwd=checkout)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("redraft")
    except PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redraft", description="Refine chatbot replies before the user sees them."
    )
    parser.add_argument("--version", action="version", version=f"redraft {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    refine = commands.add_parser("refine", help="refine one turn: RefineRequest JSON → result JSON")
    refine.add_argument("input", nargs="?", default="-", help="request file (default: stdin)")
    refine.add_argument("--strategy", choices=["parallel", "sequential", "self_refine", "none"])
    refine.add_argument("--planner", choices=["router", "llm", "hybrid", "all"])
    refine.set_defaults(run=cmd_refine)

    route = commands.add_parser(
        "route",
        help="choose critics for JSONL cases with the embedding router (no LLM call)",
        description="Each input line: {messages, persona?, knowledge?, draft?}. Each output "
        "line, in input order: {aspects, scores, sensitive, domain, reasons, ms}. Malformed "
        "lines are reported on stderr by number and end the run with exit code 1.",
    )
    route.add_argument(
        "action",
        nargs="?",
        choices=["train"],
        help="train: refit the router on the LLM planner decisions kept with learn_routing",
    )
    route.add_argument("--input", default="-", help="cases, JSON Lines (default: stdin)")
    route.add_argument("--output", help="where to write the routes (default: stdout)")
    route.set_defaults(run=cmd_route)

    demo = commands.add_parser("demo", help="offline walk-through with a scripted model")
    demo.set_defaults(run=cmd_demo)

    chat = commands.add_parser("chat", help="interactive playground")
    chat.set_defaults(run=cmd_chat)

    graph = commands.add_parser("graph", help="print the refinement graph as mermaid")
    graph.set_defaults(run=cmd_graph)

    serve = commands.add_parser("serve", help="OpenAI-compatible refining server")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port; 0 takes a free one")
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port (default 1, or REDRAFT_WORKERS); they share "
        "threads and personas through SQLite or PostgreSQL",
    )
    serve.add_argument(
        "--no-preload",
        action="store_true",
        help="do not load the embedding model, router and knowledge base at start "
        "(/readyz is then ready at once; turns with a deadline go without them until loaded)",
    )
    serve.set_defaults(run=cmd_serve)

    kb = commands.add_parser("kb", help="the local knowledge base used as evidence")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True)
    kb_add = kb_commands.add_parser(
        "add", help="index text, Markdown and PDF files (folders are searched)"
    )
    kb_add.add_argument("paths", nargs="+", help="files or folders")
    kb_add.set_defaults(run=cmd_kb_add)
    kb_search = kb_commands.add_parser("search", help="search the knowledge base")
    kb_search.add_argument("query")
    kb_search.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    kb_search.add_argument(
        "--mode", choices=["hybrid", "vector", "lexical"], default="hybrid", help="ranking"
    )
    kb_search.add_argument("--json", action="store_true", help="print the results as JSON")
    kb_search.set_defaults(run=cmd_kb_search)

    safety = commands.add_parser("safety", help="tools of the safety agent")
    safety_commands = safety.add_subparsers(dest="safety_command", required=True)
    build_paths = safety_commands.add_parser(
        "build-paths",
        help="search acquisition paths for your queries (RAISE's offline stage)",
        description="For each query and user profile, search the order in which to ask the "
        "profile's attributes (MCTS; reward: the PENGUIN safety judge's score of a reply that "
        "knows only those attributes) and write a path library for `safety_paths`. Re-running "
        "the same command resumes: queries already in --output are skipped.",
    )
    source = build_paths.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        type=Path,
        help='JSONL lines {"query": ..., "profile": {attribute: value}, "domain": optional}',
    )
    source.add_argument(
        "--penguin", type=Path, help="a PENGUIN directory (profiles.jsonl, queries.jsonl)"
    )
    build_paths.add_argument("--output", type=Path, required=True, help="path library (JSONL)")
    build_paths.add_argument("--depth", type=int, default=4, help="attributes per path (4)")
    build_paths.add_argument("--simulations", type=int, default=40, help="per query (40)")
    build_paths.add_argument("--concurrency", type=int, default=4, help="queries at once (4)")
    build_paths.add_argument("--limit", type=int, help="the first N input lines only")
    build_paths.set_defaults(run=cmd_safety_build_paths)

    persona = commands.add_parser("persona", help="import, export, show or forget a persona")
    persona_commands = persona.add_subparsers(dest="persona_command", required=True)
    persona_import = persona_commands.add_parser("import", help="add a persona file (YAML)")
    persona_import.add_argument("file", help="persona file, e.g. personas/maya.yaml")
    persona_import.add_argument("--user", required=True, help="the user id requests carry")
    for name, text in (
        ("export", "print everything stored about a user's persona, as a persona file"),
        ("show", "show a user's profile, facts (source, time, confidence) and preferences"),
        ("forget", "delete every fact, edit preference and thread of a user"),
    ):
        persona_commands.add_parser(name, help=text).add_argument("user", help="the user id")
    persona.set_defaults(run=cmd_persona)

    bench = commands.add_parser(
        "bench",
        add_help=False,  # --help and every other option go to `python -m benchmarks`
        help="performance benchmarks: latency, overhead, throughput, tokens (`bench --help`)",
    )
    bench.set_defaults(run=cmd_bench)

    from redraft.cli.eval import add_commands as add_eval_commands  # imports the Refiner

    add_eval_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        # The environment, not the input: an unwritable REDRAFT_HOME, a full disk, ...
        return fail(describe_os_error(exc), EXIT_FAILED)
    except Exception as exc:
        # A bug: one line, and the traceback at REDRAFT_LOG_LEVEL=DEBUG.
        if os.environ.get("REDRAFT_LOG_LEVEL", "").strip().upper() == "DEBUG":
            traceback.print_exc()
            hint = ""
        else:
            hint = " (REDRAFT_LOG_LEVEL=DEBUG shows the traceback)"
        return fail(f"internal error: {type(exc).__name__}: {exc}{hint}", EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
