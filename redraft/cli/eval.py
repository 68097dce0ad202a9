"""`redraft eval` (compare strategies on a dataset) and `redraft convert` (datasets → JSONL)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from redraft.eval.calibration import Calibration, calibrate
from redraft.eval.converters import FORMATS, load_dataset
from redraft.eval.datasets import SAMPLE, DatasetError, write_cases
from redraft.eval.runner import DRAFT, JUDGES, STRATEGIES

if TYPE_CHECKING:
    from redraft.config import RefinerConfig
    from redraft.eval.results import Row

JUDGE_BASE_URL_ENV = "REDRAFT_JUDGE_BASE_URL"
JUDGE_API_KEY_ENV = "REDRAFT_JUDGE_API_KEY"


def add_commands(commands: Any) -> None:
    """Register `eval` and `convert` on the `redraft` command's subparsers."""
    run = commands.add_parser(
        "eval",
        help="compare strategies on a dataset with LLM judges (resumable)",
        description="Run each case through each strategy on your endpoint, judge the replies, "
        "and write results.jsonl, summary.md, summary.json and plots to --out. Re-running the "
        "same command resumes: finished rows are not redone.",
    )
    run.add_argument(
        "--dataset",
        required=True,
        help=f"redraft JSONL, a PersonaChat/FoCus/INSCIT file, a PENGUIN directory, or "
        f"'{SAMPLE}' (the small sample shipped with redraft)",
    )
    run.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    run.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated; '{DRAFT}' (the shared draft) always runs",
    )
    run.add_argument(
        "--judges", default="geval,pairwise", help=f"comma-separated from {', '.join(JUDGES)}"
    )
    run.add_argument("--model", help="the refiner's model (default: REDRAFT_MODEL)")
    run.add_argument("--base-url", help="the refiner's endpoint (default: OPENAI_BASE_URL)")
    run.add_argument(
        "--judge-model", help="the judges' model (default: REDRAFT_JUDGE_MODEL, else --model)"
    )
    run.add_argument(
        "--judge-base-url",
        help=f"the judges' endpoint (default: {JUDGE_BASE_URL_ENV}, else the refiner's); the "
        f"judges' key comes from {JUDGE_API_KEY_ENV}, else the refiner's key",
    )
    run.add_argument("--planner", choices=["router", "llm", "hybrid", "all"])
    run.add_argument("--gate", action="store_true", help="refine with the regression gate on")
    run.add_argument("--limit", type=int, help="the first N cases only")
    run.add_argument("--concurrency", type=int, default=4, help="replies in flight at once")
    run.add_argument("--out", type=Path, default=Path("eval-results"), help="output directory")
    add_converter_options(run)
    run.set_defaults(run=cmd_eval)

    convert = commands.add_parser(
        "convert", help="convert a public dataset to redraft's evaluation JSONL"
    )
    convert.add_argument("format", choices=[f for f in FORMATS if f != "jsonl"])
    convert.add_argument("source", help="the dataset file (PENGUIN: its directory)")
    convert.add_argument("-o", "--output", type=Path, help="JSONL file (default: stdout)")
    add_converter_options(convert)
    convert.set_defaults(run=cmd_convert)


def add_converter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--persona",
        choices=["self", "partner"],
        default="self",
        help="PersonaChat: whose persona facts to use",
    )
    parser.add_argument(
        "--turns",
        choices=["all", "last"],
        default="all",
        help="every turn, or each dialogue's last",
    )
    parser.add_argument("--split", default="valid", help="PersonaChat JSON: which split")
    parser.add_argument(
        "--reveal-profile",
        action="store_true",
        help="PENGUIN: give the chatbot the user's profile as persona facts",
    )


def converter_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "persona": args.persona,
        "turns": args.turns,
        "split": args.split,
        "reveal_profile": args.reveal_profile,
    }


def cmd_convert(args: argparse.Namespace) -> int:
    from redraft.cli.common import EXIT_BAD_INPUT, fail
    from redraft.errors import describe_os_error

    try:
        cases = load_dataset(args.source, args.format, **converter_options(args))
    except DatasetError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    if args.output is None:
        for case in cases:
            print(case.model_dump_json(exclude_none=True))
        return 0
    try:
        count = write_cases(cases, args.output)
    except OSError as exc:
        return fail(f"cannot write {describe_os_error(exc)}", EXIT_BAD_INPUT)
    print(f"wrote {count} cases to {args.output}", file=sys.stderr)
    return 0


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def cmd_eval(args: argparse.Namespace) -> int:
    from redraft.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail
    from redraft.config import RefinerConfig
    from redraft.errors import describe_os_error, describe_validation_error
    from redraft.eval.report import write_report
    from redraft.eval.results import ResultsFile
    from redraft.eval.runner import Evaluation, check_run
    from redraft.llm.calls import ModelNotConfiguredError, make_chat_model
    from redraft.llm.output import PARSE_COUNTS
    from redraft.log import configure_logging

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1", EXIT_BAD_INPUT)
    try:
        cases = load_dataset(args.dataset, args.format, **converter_options(args))
    except DatasetError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    cases = cases[: args.limit]
    if not cases:
        return fail(f"{args.dataset}: no cases", EXIT_BAD_INPUT)
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "model": args.model,
            "base_url": args.base_url,
            "planner": args.planner,
            "gate": args.gate or None,
        }.items()
        if value is not None
    }
    # Per-turn logs would bury the progress lines; REDRAFT_LOG_LEVEL still wins.
    overrides.setdefault("log_level", os.environ.get("REDRAFT_LOG_LEVEL", "WARNING"))
    try:
        config = RefinerConfig(**overrides)
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    configure_logging(config.log_level)  # before the judge's calibration logs anything
    judge_name = args.judge_model or config.judge_model or config.model
    try:
        make_chat_model(config.model, config)
        judge = make_chat_model(judge_name, judge_settings(args, config))
    except ModelNotConfiguredError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    settings = run_settings(args, config, judge_name)
    results = ResultsFile(args.out / "results.jsonl")
    progress = Progress()
    try:
        evaluation = Evaluation(
            cases,
            config=config,
            judge=judge,
            results=results,
            strategies=split_list(args.strategies),
            judges=split_list(args.judges),
            concurrency=args.concurrency,
            progress=progress,
        )
        check_run(args.out, settings)
    except ValueError as exc:  # RunMismatchError, OutputDirError, a bad option...
        return fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:  # e.g. results.jsonl unreadable
        return fail(f"cannot use --out {args.out}: {describe_os_error(exc)}", EXIT_BAD_INPUT)
    total = len(cases) * len(evaluation.strategies)
    todo = evaluation.pending()
    print(
        f"redraft eval: {len(cases)} cases × {len(evaluation.strategies)} strategies; "
        f"{todo} of {total} rows to run, {total - todo} already done",
        file=sys.stderr,
    )
    progress.total = todo
    PARSE_COUNTS.clear()  # the report counts this run's outputs only
    calibration, rows = asyncio.run(
        calibrated(evaluation, judge, config.structured_output, args.out / "calibration.json")
    )
    print(f"redraft eval: judge calibration: {calibration.summary()}", file=sys.stderr)
    if warning := calibration.warning():
        print(f"redraft eval: {warning}", file=sys.stderr)
    about = {
        "dataset": f"{args.dataset} ({len(cases)} cases)",
        "model": ", ".join(f"{role} {name}" for role, name in settings["models"].items()),
        "judge model": judge_name,
        "planner": config.planner,
        "gate": config.gate,
        "judges": ", ".join(split_list(args.judges)),
        "judge calibration": calibration.summary(),
    }
    text, plots = write_report(
        args.out,
        rows.values(),
        evaluation.strategies,
        about,
        calibration=calibration.as_json(),
        warning=warning,
        parse_counts=PARSE_COUNTS.snapshot(),
    )
    print(text, end="")
    written = ["results.jsonl", "summary.md", "summary.json", *(p.name for p in plots)]
    print(f"redraft eval: wrote {', '.join(written)} to {args.out}", file=sys.stderr)
    if not plots:
        print(
            "redraft eval: no plots (pip install 'redraft[bench]' for matplotlib)", file=sys.stderr
        )
    missing = total - sum(row.ok for row in rows.values())
    if missing:
        return fail(
            f"{missing} of {total} rows failed or did not run (see results.jsonl); "
            "run the same command again to retry them",
            EXIT_FAILED,
        )
    return 0


async def calibrated(
    evaluation: Any, judge: Any, method: str, saved: Path
) -> tuple[Calibration, dict[Any, Any]]:
    """The judge's calibration, then the run (in one event loop: the clients are bound to it).
    A resumed run (same settings, so the same judge) reuses the calibration it saved; one left
    incomplete by a failing endpoint is not saved, so the next run calibrates again."""
    calibration = Calibration.load(saved)
    if calibration is None or not calibration.complete:
        calibration = await calibrate(judge, method=method)
        if calibration.complete:
            calibration.save(saved)
    return calibration, await evaluation.run()


def judge_settings(args: argparse.Namespace, config: RefinerConfig) -> RefinerConfig:
    """The judges' endpoint and key (their own, else the refiner's), at temperature 0."""
    key = os.environ.get(JUDGE_API_KEY_ENV)
    return config.model_copy(
        update={
            "base_url": args.judge_base_url
            or os.environ.get(JUDGE_BASE_URL_ENV)
            or config.base_url,
            "api_key": SecretStr(key) if key else config.api_key,
            "temperature": 0.0,
        }
    )


def run_settings(
    args: argparse.Namespace, config: RefinerConfig, judge_name: str
) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    return {
        "dataset": args.dataset if args.dataset == SAMPLE else str(Path(args.dataset).resolve()),
        # converter options that change what a case contains (the ids stay the same)
        "persona": args.persona,
        "reveal_profile": args.reveal_profile,
        "models": {
            role: config.model_for(role) for role in ("responder", "planner", "critic", "editor")
        },
        "judge_model": judge_name,
        "planner": config.planner,
        "critics": config.critics,
        "max_rounds": config.max_rounds,
        "gate": config.gate,
        "judges": sorted(split_list(args.judges)),
    }


class Progress:
    """One line on stderr per finished row."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def __call__(self, row: Row) -> None:
        self.done += 1
        status = "ok" if row.ok else f"FAILED ({row.error})"
        print(
            f"[{self.done}/{self.total}] {row.case_id} {row.strategy}: {status}",
            file=sys.stderr,
            flush=True,
        )
