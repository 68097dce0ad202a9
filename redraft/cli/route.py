"""`redraft route`: route JSONL cases with the embedding router, one output line per valid case.

Input lines are `{"messages": [...], "persona": [...]?, "knowledge": [...]?, "draft": "..."?}`
(validated as a RefineRequest; other fields, such as a dataset's ids or labels, are ignored and
named once on stderr). Output lines, in input order: `aspects`, `scores`, `sensitive`,
`domain`, `reasons`, `ms`. The model loads once, before the first line; its load time goes to
stderr. A malformed line is reported on stderr with its number and skipped; the exit code is then
1, after every other line was routed.

`redraft route train` refits the learned router on the LLM planner decisions kept with
`learn_routing` (see `learning.py`) and prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterable
from typing import IO

from pydantic import ValidationError

from redraft.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail
from redraft.config import RefinerConfig
from redraft.embeddings import EmbeddingsNotInstalledError
from redraft.errors import describe_validation_error
from redraft.llm.calls import ModelNotConfiguredError
from redraft.parsing import parse_json
from redraft.routing.examples import ExamplesError
from redraft.routing.learning import (
    LearnedError,
    fit,
    learned_path,
    stored_decisions,
    summary,
    write_learned,
)
from redraft.routing.router import Route, Router, get_router
from redraft.state import RefineRequest

OUTPUT_FIELDS = {"aspects", "scores", "sensitive", "domain", "reasons"}


def output_line(route: Route, ms: float) -> str:
    """One output line of the stable contract (no other keys)."""
    return json.dumps({**route.model_dump(include=OUTPUT_FIELDS), "ms": round(ms, 3)})


def parse_case(line: str, config: RefinerConfig) -> tuple[RefineRequest, list[str]]:
    """One input line as a request, and the names of the fields it carries that routing does
    not read (ids, labels: a dataset's own fields are not errors); raises ValueError with a
    one-line reason."""
    if not line.strip():
        raise ValueError("empty line (one JSON object per line is expected)")
    try:
        data = parse_json(line)  # nested too deeply: a ValueError of its own
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError("a case must be a JSON object")
    limits = {"max_messages": config.max_messages, "max_message_chars": config.max_message_chars}
    known = {k: v for k, v in data.items() if k in RefineRequest.model_fields}
    try:
        case = RefineRequest.model_validate(known, context=limits)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from exc
    return case, sorted(set(data) - set(known))


def route_lines(
    lines: Iterable[bytes], output: IO[str], router: Router, config: RefinerConfig, source: str
) -> int:
    """Routes every valid line; returns the number of malformed or failed lines."""
    bad = 0
    ignored_said: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        try:
            case, ignored = parse_case(raw.decode("utf-8"), config)
        except (UnicodeDecodeError, ValueError) as exc:
            bad += 1
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc
            print(f"redraft: {source} line {number}: {reason}", file=sys.stderr)
            continue
        unsaid = [name for name in ignored if name not in ignored_said]
        if unsaid:  # a typo shows; a dataset's own fields are named once, not on every line
            ignored_said.update(unsaid)
            names = ", ".join(unsaid)
            print(f"redraft: {source} line {number}: ignored field(s): {names}", file=sys.stderr)
        started = time.perf_counter()
        try:
            route = router.route(
                [m.model_dump() for m in case.messages],
                persona=case.persona,
                knowledge=case.knowledge,
                draft=case.draft_text,
            )
        except Exception as exc:  # e.g. the OpenAI embeddings endpoint failing for this line
            bad += 1
            print(f"redraft: {source} line {number}: routing failed: {exc}", file=sys.stderr)
            continue
        output.write(output_line(route, (time.perf_counter() - started) * 1000) + "\n")
        output.flush()
    return bad


def cmd_route(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "train":
        return cmd_train()
    try:
        config = RefinerConfig()
        router = get_router(config)
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    except (ExamplesError, LearnedError, ModelNotConfiguredError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except EmbeddingsNotInstalledError as exc:
        return fail(str(exc), EXIT_FAILED)
    source = "stdin" if args.input == "-" else args.input
    with contextlib.ExitStack() as files:
        try:
            lines = (
                sys.stdin.buffer
                if args.input == "-"
                else files.enter_context(open(args.input, "rb"))
            )
            output = (
                sys.stdout
                if args.output is None
                else files.enter_context(open(args.output, "w", encoding="utf-8"))
            )
        except OSError as exc:
            return fail(f"cannot open {exc.filename}: {exc.strerror or exc}", EXIT_BAD_INPUT)
        try:
            times = router.load()
        except Exception as exc:
            return fail(f"the router could not be loaded: {exc}", EXIT_FAILED)
        print(
            f"redraft: router loaded: model {times.model_s:.2f} s, "
            f"{times.examples} examples {times.examples_s:.2f} s",
            file=sys.stderr,
        )
        bad = route_lines(lines, output, router, config, source)
    if bad:
        return fail(f"{bad} line(s) of {source} could not be routed (see above)", EXIT_FAILED)
    return 0


def cmd_train() -> int:
    """`redraft route train`: fit the learned router on the stored LLM planner decisions and
    write its weights (a summary goes to stdout as JSON)."""
    try:
        config = RefinerConfig()
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    try:
        decisions, dropped = asyncio.run(_decisions(config))
    except Exception as exc:
        return fail(f"the store could not be read: {exc}", EXIT_FAILED)
    try:
        learned = fit(decisions)
    except ValueError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    path = learned_path(config)
    try:
        write_learned(learned, path)
    except OSError as exc:
        return fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILED)
    print(json.dumps({**summary(learned), "older_deleted": dropped, "written": str(path)}))
    return 0


async def _decisions(config: RefinerConfig) -> tuple[list, int]:
    from redraft.personas.store import open_store

    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(config, stack)
        return await stored_decisions(store, config)
