"""Critical-path latency: each strategy's turn time against its provider round trips.

Every call to the FakeProvider (in its own process) takes `latency_s`, plus its completion
tokens at `tokens_per_s` in the generation regime. For each cell — strategy, planner, number of
selected critics k — N turns run through the real path (Refiner → openai SDK → HTTP),
cells interleaved turn by turn so that machine noise falls on all of them alike, after one
warm-up round. Round trips are read from the provider's request log (calls that overlapped at
the provider are one round trip), never assumed; the round trips the design promises are kept
next to them as a check.

    ratio = median turn time / median provider time on the critical path

where a round trip's provider time is that of its slowest call (= round trips × L when tokens
are free). Critics are scripted to revise, so the editor runs.

Two regimes: `round_trips` (tokens are free: a call costs L, the issue's ratio exactly) over
every cell, and `generation` (calls also produce their tokens at `tokens_per_s`: sequential
steps write a critique and the whole reply, parallel critics only a critique) over the LLM
planner's cells.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.perf_common import (
    ASPECTS,
    expected_round_trips,
    in_flight,
    median,
    provider_seconds,
    refiner_config,
    request,
    round_trips,
    script_turn,
    summary,
)
from benchmarks.perf_provider import RemoteProvider
from redraft import Refiner


@dataclass(frozen=True)
class Cell:
    """One configuration measured: `critics` is None for strategies that choose no critics."""

    strategy: str
    planner: str
    critics: int | None

    @property
    def name(self) -> str:
        if self.critics is None:
            return self.strategy
        return f"{self.strategy}/{self.planner}/k={self.critics}"

    @property
    def chitchat(self) -> bool:
        """The router chooses no critic for small talk: its k = 0 turn is small talk."""
        return self.planner == "router" and self.critics == 0

    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {"strategy": self.strategy, "planner": self.planner}
        if self.planner == "router" and self.critics:
            values["critics"] = list(ASPECTS[: self.critics])
        return values


def cells(regime: str, *, router: bool) -> list[Cell]:
    """The cells of a regime; the router's only when its model is installed."""
    baselines = [Cell("none", "llm", None), Cell("self_refine", "llm", None)]
    if regime == "generation":
        return [
            *baselines,
            *(Cell(s, "llm", k) for k in range(1, 5) for s in ("parallel", "sequential")),
        ]
    planners = ("llm", "router") if router else ("llm",)
    return [
        *baselines,
        *(Cell(s, p, k) for p in planners for k in range(5) for s in ("parallel", "sequential")),
    ]


async def run_regime(
    provider: RemoteProvider,
    home: Path,
    regime: str,
    *,
    turns: int,
    latency_s: float,
    tokens_per_s: float | None,
    router: bool,
) -> dict[str, Any]:
    provider.configure(latency_s=latency_s, tokens_per_s=tokens_per_s)
    chosen = cells(regime, router=router)
    refiners = {cell: Refiner(refiner_config(provider, home, **cell.settings())) for cell in chosen}
    samples: dict[Cell, list[dict[str, Any]]] = {cell: [] for cell in chosen}
    started = time.perf_counter()
    number = 0
    try:
        for round_number in range(turns + 1):  # round 0 warms up (loads the router's model)
            for cell in chosen:
                number += 1
                sample = await one_turn(provider, refiners[cell], cell, number)
                if round_number:
                    samples[cell].append(sample)
    finally:
        for refiner in refiners.values():
            await refiner.aclose()
    return {
        "regime": regime,
        "latency_ms": latency_s * 1000,
        "tokens_per_s": tokens_per_s,
        "turns_per_cell": turns,
        "seconds": round(time.perf_counter() - started, 1),
        "cells": [cell_row(cell, samples[cell], latency_s, tokens_per_s) for cell in chosen],
    }


async def one_turn(
    provider: RemoteProvider, refiner: Refiner, cell: Cell, number: int
) -> dict[str, Any]:
    script_turn(provider, ASPECTS[: cell.critics or 0])
    since = provider.count()
    started = time.perf_counter()
    result = await refiner.arefine(request(number, chitchat=cell.chitchat))
    wall_s = time.perf_counter() - started
    calls = provider.calls(since)
    rounds = round_trips(calls)
    provider_s = provider_seconds(rounds)
    return {
        "wall_ms": wall_s * 1000,
        "provider_ms": provider_s * 1000,
        "round_trips": len(rounds),
        "in_flight": in_flight(calls),
        "calls": len(calls),
        "usage_calls": result.usage.llm_calls,
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
        "planned": len(result.plan.aspects),
        "degraded": [d.step for d in result.degraded or []],
    }


def cell_row(
    cell: Cell, samples: list[dict[str, Any]], latency_s: float, tokens_per_s: float | None
) -> dict[str, Any]:
    walls = [s["wall_ms"] for s in samples]
    providers = [s["provider_ms"] for s in samples]
    trips = sorted({s["round_trips"] for s in samples})
    expected = expected_round_trips(cell.strategy, cell.planner, cell.critics or 0)
    row: dict[str, Any] = {
        "cell": cell.name,
        "strategy": cell.strategy,
        "planner": cell.planner if cell.critics is not None else None,
        "critics": cell.critics,
        "expected_round_trips": expected,
        "round_trips": trips[0] if len(trips) == 1 else trips,
        "max_in_flight": max(s["in_flight"] for s in samples),
        "calls_per_turn": median([s["calls"] for s in samples]),
        "plan_as_intended": all(s["planned"] == (cell.critics or 0) for s in samples)
        if cell.critics is not None
        else True,
        "wall_ms": summary(walls),
        "provider_ms": summary(providers),
        "overhead_ms": summary([w - p for w, p in zip(walls, providers, strict=True)]),
        "ratio": round(median(walls) / median(providers), 3),
        "prompt_tokens": median([s["prompt_tokens"] for s in samples]),
        "completion_tokens": median([s["completion_tokens"] for s in samples]),
        "degraded": sorted({step for s in samples for step in s["degraded"]}),
    }
    if tokens_per_s is None and isinstance(row["round_trips"], int):
        # The definition: turn time ÷ (round trips on the critical path × L).
        row["ratio_nominal"] = round(median(walls) / (row["round_trips"] * latency_s * 1000), 3)
    return row


def speedups(regime: dict[str, Any]) -> list[dict[str, Any]]:
    """Parallel against sequential on the same plans: median turn time, per planner and k."""
    by_name = {row["cell"]: row for row in regime["cells"]}
    rows = []
    for planner in ("llm", "router"):
        for k in range(1, 5):
            parallel = by_name.get(f"parallel/{planner}/k={k}")
            sequential = by_name.get(f"sequential/{planner}/k={k}")
            if not (parallel and sequential):
                continue
            rows.append(
                {
                    "planner": planner,
                    "critics": k,
                    "parallel_p50_ms": parallel["wall_ms"]["p50"],
                    "sequential_p50_ms": sequential["wall_ms"]["p50"],
                    "speedup": round(sequential["wall_ms"]["p50"] / parallel["wall_ms"]["p50"], 3),
                    "round_trips": [parallel["round_trips"], sequential["round_trips"]],
                }
            )
    return rows


async def measure(
    provider: RemoteProvider,
    home: Path,
    *,
    turns: int,
    generation_turns: int,
    latency_s: float,
    tokens_per_s: float,
    router: bool,
) -> dict[str, Any]:
    """Both regimes; the speedup tables come from the same runs."""
    regimes = [
        await run_regime(
            provider,
            home,
            "round_trips",
            turns=turns,
            latency_s=latency_s,
            tokens_per_s=None,
            router=router,
        ),
        await run_regime(
            provider,
            home,
            "generation",
            turns=generation_turns,
            latency_s=latency_s,
            tokens_per_s=tokens_per_s,
            router=False,
        ),
    ]
    for regime in regimes:
        regime["speedups"] = speedups(regime)
    return {"router": router, "regimes": regimes}
