"""CPU per warm turn, and where it goes: for measuring one change to redraft's own per-turn work.

    python -m benchmarks.perf_levers --turns 60 --log-level INFO 2>/dev/null
    python -m benchmarks.perf_levers --turns 60 --log-level INFO --json before.json 2>/dev/null
    python -m benchmarks.perf_levers --ab tracker-in-place --turns 60

`--ab LEVER` measures one lever both ways in one process instead, turns interleaved: the
five-call turn of `benchmarks/lean_peer.py` with the query embedded before each turn (so the
safety critic's embedding does not add its noise), CPU of the process per turn, p50 each way.
Levers: `tracker-in-place` (the usage tracker taking only chat-model events, in place, against
LangChain's default handling: a task per event, chain events included).

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

from benchmarks.lean_peer import redraft_request
from benchmarks.perf_common import ASPECTS, refiner_config, request, script_turn, turn_text
from benchmarks.perf_overhead import Cell, profile_turns_of
from benchmarks.perf_provider import remote_provider
from redraft import Refiner
from redraft.embeddings import get_embeddings, local_model_installed
from redraft.llm.usage import UsageTracker

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


TRACKER_FLAGS = (
    "run_inline",
    "ignore_chain",
    "ignore_agent",
    "ignore_retriever",
    "ignore_retry",
    "ignore_custom_event",
)
"""What `UsageTracker` sets so that LangGraph hands it only chat-model events, in place."""


class Lever:
    """Turns one lever off and on again (on is redraft as shipped)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._kept = {flag: UsageTracker.__dict__[flag] for flag in TRACKER_FLAGS}

    def set(self, on: bool) -> None:
        for flag, value in self._kept.items():
            if on:
                setattr(UsageTracker, flag, value)
            else:
                delattr(UsageTracker, flag)

    def restore(self) -> None:
        self.set(True)


LEVERS = ("tracker-in-place",)


async def ab(name: str, turns: int) -> dict[str, Any]:
    """CPU per turn with the lever off and on, turns interleaved."""
    lever = Lever(name)
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        with remote_provider() as provider, tempfile.TemporaryDirectory() as home:
            provider.configure(latency_s=0.0, tokens_per_s=None)
            script_turn(provider, ASPECTS)
            config = refiner_config(provider, Path(home), planner="all", critics=list(ASPECTS))
            embeddings = get_embeddings(config) if local_model_installed() else None
            async with Refiner(config) as refiner:
                for number in range(WARM_UP + turns):
                    for index, side in enumerate(("off", "on")):
                        lever.set(side == "on")
                        query = 2 * number + index
                        if embeddings is not None:  # as the router does; not measured
                            await embeddings.aembed_query(turn_text(query))
                        started = time.process_time()
                        await refiner.arefine(redraft_request(query))
                        if number >= WARM_UP:
                            cpu[side].append((time.process_time() - started) * 1000)
    finally:
        lever.restore()
    p50 = {side: round(statistics.median(values), 2) for side, values in cpu.items()}
    saved = round(p50["off"] - p50["on"], 2)
    return {"lever": name, "turns": turns, "cpu_ms_p50": p50, "saved_ms": saved}


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
    parser.add_argument("--ab", choices=LEVERS, help="measure one lever off and on instead")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.profile_turns < 1:
        parser.error("--turns and --profile-turns must be at least 1")
    if args.ab:
        data = asyncio.run(ab(args.ab, args.turns))
        print(
            f"{data['lever']}: CPU per turn p50 off {data['cpu_ms_p50']['off']} ms, on "
            f"{data['cpu_ms_p50']['on']} ms ({data['turns']} turns each, interleaved)"
        )
    else:
        data = asyncio.run(measure(args.turns, args.profile_turns, args.log_level.upper()))
        print(render(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
