"""Performance benchmarks, one command: critical path, overhead, throughput, tokens and calls.

    python -m benchmarks                 # everything (about 25-35 minutes on 2 cores)
    python -m benchmarks --quick         # a smoke run in CI-sized time (under 3 minutes)
    python -m benchmarks --only overhead --turns 200
    python -m benchmarks --report-only   # BENCHMARKS.md and plots again, from saved results
    python -m benchmarks --only cold-start,workers   # fresh processes; serve --workers 1 and 2

Results go to benchmarks/results/perf-<part>.json, plots to benchmarks/plots/perf-<part>.png,
tables to BENCHMARKS.md between `<!-- perf:begin -->` and `<!-- perf:end -->`. A quick run writes
perf-<part>-quick.json and touches neither the plots nor BENCHMARKS.md unless --plots or
--markdown say where.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import (
    cold_start,
    perf_cost,
    perf_critical_path,
    perf_overhead,
    perf_report,
    perf_throughput,
    workers,
)
from benchmarks.perf_common import PLOTS, REPO, RESULTS, machine
from benchmarks.perf_provider import remote_provider

PART_NAMES = {part.replace("_", "-"): part for part in perf_report.PARTS}
SEPARATE = ("cold-start", "workers")
"""Parts with their own command and JSON (`benchmarks/cold_start.py`, `benchmarks/workers.py`),
run by a full run or `--only`; their section of BENCHMARKS.md is written by hand."""


@dataclass(frozen=True)
class Settings:
    """How big a run is; `--quick` and the flags below change it."""

    turns: int = 20
    generation_turns: int = 10
    latency_ms: float = 250.0
    tokens_per_s: float = 100.0
    overhead_turns: int = 100
    profile_turns: int = 30
    levels: tuple[int, ...] = (1, 8, 32, 128)
    duration_s: float = 30.0
    cost_cases: int | None = None

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            turns=2,
            generation_turns=1,
            latency_ms=100.0,
            tokens_per_s=400.0,
            overhead_turns=10,
            profile_turns=5,
            levels=(1, 8, 32),
            duration_s=3.0,
            cost_cases=24,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run in CI-sized time")
    parser.add_argument(
        "--only",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        help=f"comma-separated parts: {', '.join([*PART_NAMES, *SEPARATE])} (default: all)",
    )
    parser.add_argument("--turns", type=int, help="turns per critical-path cell (20; quick 2)")
    parser.add_argument("--latency-ms", type=float, help="provider latency per call L (250)")
    parser.add_argument(
        "--tokens-per-s", type=float, help="token rate of the generation regime (100)"
    )
    parser.add_argument("--overhead-turns", type=int, help="turns per overhead cell (100)")
    parser.add_argument(
        "--levels",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        help="concurrent conversations for the throughput part (1,8,32,128)",
    )
    parser.add_argument("--duration-s", type=float, help="seconds per throughput level (30)")
    parser.add_argument("--cost-cases", type=int, help="workload cases for tokens (all 232)")
    parser.add_argument(
        "--no-router", action="store_true", help="leave out the embedding router's cells"
    )
    parser.add_argument("--results", type=Path, help="results folder (benchmarks/results)")
    parser.add_argument("--plots", type=Path, help="plots folder (benchmarks/plots)")
    parser.add_argument("--markdown", type=Path, help="the Markdown file (BENCHMARKS.md)")
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the report from saved results"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    base = Settings.quick() if args.quick else Settings()
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("turns", "turns"),
        ("latency_ms", "latency_ms"),
        ("tokens_per_s", "tokens_per_s"),
        ("overhead_turns", "overhead_turns"),
        ("levels", "levels"),
        ("duration_s", "duration_s"),
        ("cost_cases", "cost_cases"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    if args.turns is not None:
        overrides["generation_turns"] = max(1, args.turns // 2)
    return Settings(**{**base.__dict__, **overrides})


def check(args: argparse.Namespace, settings: Settings) -> str | None:
    """What is wrong with the arguments, or None."""
    names = [*PART_NAMES, *SEPARATE]
    unknown = [p for p in args.only or [] if p not in names]
    if unknown:
        return f"--only: unknown part(s) {', '.join(unknown)}; choose from {', '.join(names)}"
    positive = ("turns", "overhead_turns", "latency_ms", "tokens_per_s", "duration_s")
    for field in positive:
        if getattr(settings, field) <= 0:
            return f"--{field.replace('_', '-')} must be positive"
    if not settings.levels or min(settings.levels) < 1:
        return "--levels: give positive numbers of conversations, e.g. 1,8,32"
    if settings.cost_cases is not None and settings.cost_cases < 1:
        return "--cost-cases must be at least 1"
    return None


def router_available() -> bool:
    from redraft.embeddings import local_model_installed

    return local_model_installed()


async def run_part(
    part: str, settings: Settings, provider: Any, home: Path, router: bool
) -> dict[str, Any]:
    latency_s = settings.latency_ms / 1000
    if part == "critical_path":
        return await perf_critical_path.measure(
            provider,
            home,
            turns=settings.turns,
            generation_turns=settings.generation_turns,
            latency_s=latency_s,
            tokens_per_s=settings.tokens_per_s,
            router=router,
        )
    if part == "overhead":
        return await perf_overhead.measure(
            provider,
            home,
            turns=settings.overhead_turns,
            profile_turns=settings.profile_turns,
            router=router,
        )
    if part == "cost":
        return await perf_cost.measure(provider, home, limit=settings.cost_cases, router=router)
    # The throughput part drives its own event loops: it runs in a thread of its own here.
    return await asyncio.to_thread(
        perf_throughput.measure,
        provider,
        home / "serve",
        levels=settings.levels,
        duration_s=settings.duration_s,
        latency_s=latency_s,
        planner="router" if router else "llm",
    )


def run(args: argparse.Namespace, settings: Settings, results: Path) -> None:
    if args.only:
        parts = [PART_NAMES[p] for p in args.only if p in PART_NAMES]
        separate = [p for p in args.only if p in SEPARATE]
    else:
        parts, separate = list(perf_report.PARTS), [] if args.quick else list(SEPARATE)
    suffix = "-quick" if args.quick else ""
    router = router_available() and not args.no_router
    command = "python -m benchmarks" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if args.argv is None else args.argv)
    )
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="redraft-bench-") as tmp, remote_provider() as provider:
        for part in parts:
            started, where = time.perf_counter(), machine()
            print(f"benchmarks: {part} …", file=sys.stderr, flush=True)
            data = asyncio.run(run_part(part, settings, provider, Path(tmp) / part, router))
            path = perf_report.result_path(results, part, suffix)
            data.update(
                command=command,
                settings=settings.__dict__,
                machine=where,
                run_seconds=round(time.perf_counter() - started, 1),
                file=_shown(path),
            )
            path.write_text(json.dumps(data, indent=2) + "\n")
            print(f"benchmarks: {part} done in {data['run_seconds']} s → {path}", file=sys.stderr)
    for part in separate:  # each starts its own provider and processes
        print(f"benchmarks: {part} …", file=sys.stderr, flush=True)
        if part == "cold-start":
            cold_start.main(["--json", str(results / "cold-start.json")])
        else:
            levels = "1,32"  # one conversation, and the 32-conversation tail
            workers.main(
                [
                    *("--levels", levels, "--duration-s", str(settings.duration_s)),
                    *("--latency-ms", str(settings.latency_ms)),
                    *("--json", str(results / "perf-workers.json")),
                ]
            )


def report(results: Path, suffix: str, plots: Path | None, markdown: Path | None) -> None:
    found = perf_report.load(results, suffix)
    if not found:
        raise FileNotFoundError(f"no saved results perf-*{suffix}.json in {results}")
    if plots is not None:
        perf_report.plot_all(found, plots)
    if markdown is not None:
        perf_report.write_markdown(markdown, perf_report.section(found, plots, markdown))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = argv
    settings = settings_from(args)
    problem = check(args, settings)
    if problem:
        print(f"benchmarks: {problem}", file=sys.stderr)
        return 2
    results = args.results or RESULTS
    quick = args.quick
    plots = args.plots or (None if quick else PLOTS)
    markdown = args.markdown or (None if quick else REPO / "BENCHMARKS.md")
    if not args.report_only:
        run(args, settings, results)
    if args.only and all(p in SEPARATE for p in args.only):
        return 0  # their figures are in their own JSON; the generated report is not theirs
    try:
        report(results, "-quick" if quick else "", plots, markdown)
    except (FileNotFoundError, ValueError) as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
