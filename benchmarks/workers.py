"""Throughput and tail latency through `redraft serve --workers N`, for each N given.

    python -m benchmarks.workers                          # 1 and 2 workers, 1 and 32 conversations
    python -m benchmarks.workers --workers 1,2 --levels 1,32 --duration-s 30

The throughput part's load (`perf_throughput`: conversations sending full refinements back to
back through the openai SDK, upstream a FakeProvider in its own process taking `--latency-ms`
per call), once per worker count; the server is ready (every worker preloaded, `/readyz`) before
the first turn. Per level: turns/s, turns per CPU-second of the server's processes (throughput
per core), latency percentiles and the p99 over the single conversation's p50.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import perf_throughput
from benchmarks.perf_common import RESULTS, machine
from benchmarks.perf_provider import remote_provider
from redraft.embeddings import local_model_installed


def numbers(text: str) -> tuple[int, ...]:
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive numbers, e.g. 1,2")
    return values


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | conversations | turns/s | turns per CPU-s | server CPU busy | p50 ms "
        "| p99 ms | p99 / single p50 | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["levels"]:
            latency = row["latency_ms"]
            per_cpu = 1000 / row["server_cpu_ms_per_turn"] if row["server_cpu_ms_per_turn"] else 0
            lines.append(
                f"| {run['workers']} | {row['conversations']} | {row['turns_per_s']} "
                f"| {per_cpu:.1f} | {row['server_cpu_busy']} | {latency.get('p50', '–')} "
                f"| {latency.get('p99', '–')} | {row.get('p99_over_single_p50', '–')} "
                f"| {row['errors']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=numbers, default=(1, 2), help="worker counts (1,2)")
    parser.add_argument("--levels", type=numbers, default=(1, 32), help="conversations (1,32)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="seconds per level (20)")
    parser.add_argument("--latency-ms", type=float, default=250.0, help="upstream per call (250)")
    parser.add_argument("--json", type=Path, default=RESULTS / "perf-workers.json")
    args = parser.parse_args(argv)
    if args.duration_s <= 0 or args.latency_ms < 0:
        parser.error("--duration-s must be positive and --latency-ms not negative")
    planner = "router" if local_model_installed() else "llm"
    runs = []
    with remote_provider() as provider, tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            runs.append(
                perf_throughput.measure(
                    provider,
                    Path(tmp) / f"serve-{workers}",
                    levels=args.levels,
                    duration_s=args.duration_s,
                    latency_s=args.latency_ms / 1000,
                    planner=planner,
                    workers=workers,
                )
            )
            print(table(runs[-1:]), flush=True)
    print(table(runs))
    args.json.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
