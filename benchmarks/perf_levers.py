"""CPU per warm turn, and where it goes: for measuring one change to redraft's own per-turn work.

    python -m benchmarks.perf_levers --turns 60 --log-level INFO 2>/dev/null
    python -m benchmarks.perf_levers --turns 60 --log-level INFO --json before.json 2>/dev/null

The turn of `perf_overhead` (parallel strategy, LLM planner, three critics that revise, the
editor: six calls) against a FakeProvider in its own process that answers at once. It prints the
median CPU time of this process per turn (every thread), then the top of a pyinstrument profile
of further turns (self time per package, and the costliest functions with what they call).
`--log-level INFO` is the server's default: the log lines a turn writes are part of its cost
(send stderr to /dev/null, as a log collector would take it away).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.perf_common import ASPECTS, refiner_config, request, script_turn
from benchmarks.perf_overhead import Cell, profile_turns_of
from benchmarks.perf_provider import remote_provider
from redraft import Refiner

CRITICS = 3
WARM_UP = 5


async def measure(turns: int, profile_turns: int, log_level: str) -> dict[str, Any]:
    with remote_provider() as provider, tempfile.TemporaryDirectory() as home:
        provider.configure(latency_s=0.0, tokens_per_s=None)
        script_turn(provider, ASPECTS[:CRITICS])
        config = refiner_config(
            provider, Path(home), planner="llm", critics=list(ASPECTS), log_level=log_level
        )
        async with Refiner(config) as refiner:
            cpu: list[float] = []
            for number in range(WARM_UP + turns):
                started = time.process_time()
                await refiner.arefine(request(number))
                if number >= WARM_UP:
                    cpu.append((time.process_time() - started) * 1000)
            cell = Cell("levers", "http", "none", "llm")
            profile = await profile_turns_of(provider, refiner, cell, profile_turns)
    return {
        "turns": turns,
        "log_level": log_level,
        "cpu_ms_p50": round(statistics.median(cpu), 2),
        "cpu_ms_mean": round(statistics.fmean(cpu), 2),
        "profile": profile,
    }


def render(data: dict[str, Any], top: int = 10) -> str:
    profile = data["profile"]
    lines = [
        f"CPU per warm turn: p50 {data['cpu_ms_p50']} ms, mean {data['cpu_ms_mean']} ms "
        f"({data['turns']} turns, log level {data['log_level']})",
        f"profile ({profile['turns']} turns, {profile['sampled_ms_per_turn']} ms sampled per "
        "turn): self time by package",
    ]
    lines += [f"  {p['share']:6.1%}  {p['name']}" for p in profile["packages"][:top]]
    lines.append("costliest functions with what they call (standard library left out):")
    lines += [f"  {p['share']:6.1%}  {p['name']}" for p in profile["inclusive"][:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=60, help="measured turns (60)")
    parser.add_argument("--profile-turns", type=int, default=30, help="profiled turns (30)")
    parser.add_argument("--log-level", default="INFO", help="the refiner's log level (INFO)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.profile_turns < 1:
        parser.error("--turns and --profile-turns must be at least 1")
    data = asyncio.run(measure(args.turns, args.profile_turns, args.log_level.upper()))
    print(render(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
