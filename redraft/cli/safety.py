"""`redraft safety build-paths`: RAISE's offline stage, on your endpoint and your queries."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from redraft.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail
from redraft.config import RefinerConfig
from redraft.errors import describe_validation_error
from redraft.eval.datasets import DatasetError
from redraft.llm.calls import ModelNotConfiguredError
from redraft.safety.build_paths import PathBuilder, build_paths, penguin_cases, read_cases


def cmd_build_paths(args: argparse.Namespace) -> int:
    """Run `redraft safety build-paths`; returns the exit code."""
    for name in ("depth", "simulations", "concurrency", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return fail(f"--{name} must be at least 1", EXIT_BAD_INPUT)
    source = args.penguin or args.input
    try:
        lines = penguin_cases(source) if args.penguin else read_cases(source)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(
            f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}", EXIT_BAD_INPUT
        )
    except DatasetError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    lines = lines[: args.limit]
    if not lines:
        return fail(f"{source}: no cases", EXIT_BAD_INPUT)
    try:
        config = RefinerConfig()
        builder = PathBuilder(config, depth=args.depth, simulations=args.simulations)
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    except ModelNotConfiguredError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    for line in lines:
        if line.error:
            fail(f"{line.where}: {line.error}", EXIT_BAD_INPUT)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        outcome = build_paths(
            lines, args.output, builder, concurrency=args.concurrency, progress=progress
        )
    except ValueError as exc:  # the output is not a path library
        return fail(f"{exc}; fix or remove it, then run again", EXIT_BAD_INPUT)
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_FAILED)
    skipped = [
        f"{outcome.already_done} already in {args.output}" if outcome.already_done else "",
        f"{outcome.duplicates} repeated queries skipped" if outcome.duplicates else "",
    ]
    summary = "; ".join(filter(None, [f"wrote {outcome.written} paths", *skipped]))
    print(f"redraft safety build-paths: {summary}", file=sys.stderr)
    if outcome.failed:
        return fail(
            f"{len(outcome.failed)} of {len(lines)} lines failed (listed above); "
            "fix them and run the same command again to do only those",
            EXIT_FAILED,
        )
    return 0
