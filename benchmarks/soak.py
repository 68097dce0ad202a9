"""Soak under faults: many turns while the provider fails a share of its calls.

A FakeProvider fails `--fault-rate` of all calls, each failure drawn from every fault kind
redraft must survive: 500s, 429 with Retry-After, connection resets, calls that never answer
(cut by the client's timeout or the turn's deadline), truncated responses, empty `choices` and
structured outputs cut in half (invalid JSON). Conversations of several turns run concurrently,
on SQLite threads, through the real path (Refiner → ChatOpenAI → openai SDK → HTTP); some turns
hand in a draft, some carry knowledge passages, some have no thread.

Every turn must end with a reply or a typed `RefineError`, by its deadline plus the guard's
margin; a turn with a handed-in draft must always have a reply. Afterwards one clean turn per
conversation checks that the thread holds every turn that got a reply, in order (no data lost).

    python -m benchmarks.soak               # 1,000 turns: benchmarks/results/reliability-soak.json
    python -m benchmarks.soak --turns 150   # the CI size (tests/test_reliability_soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redraft import RefineError, Refiner, RefinerConfig
from redraft.graphs.deadline import GUARD_MARGIN_S
from redraft.testing import Fail, FakeProvider, Fault

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "reliability-soak.json"

FAULTS = (
    Fail(500, "injected server error"),
    Fail(429, "injected rate limit", retry_after=0.05),
    Fault("reset"),
    Fault("hang"),
    Fault("truncate"),
    Fault("empty_choices"),
    Fault("invalid_json"),
)
CRITICS = ("factuality", "personalization", "coherence")
PLAN = {"steps": [{"aspect": a, "reason": "soak"} for a in CRITICS]}
PASS = {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}
REVISE = {
    "verdict": "revise",
    "issues": [{"span": "draft", "problem": "vague", "fix": "answer"}],
    "confidence": 0.8,
    "evidence": [],
}
TURNS_PER_CONVERSATION = 5
SLACK_S = 1.0
"""A turn may end this long after its deadline plus the guard's margin before the soak calls it a
problem: the event loop of a busy 2-core machine lags (garbage collection alone pauses it for
~150 ms). The report gives the exact figures; a turn that ignored its deadline would instead wait
for the hour that `Fault("hang")` lasts."""


@dataclass
class Outcome:
    kind: str  # reply | reply_degraded | error:<step> | untyped:<exception>
    seconds: float
    degraded: list[str] = field(default_factory=list)
    handed_draft: bool = False


@dataclass
class Soak:
    """What a soak saw; `problems` must be empty."""

    turns: int
    fault_rate: float
    deadline_s: float
    outcomes: list[Outcome]
    faults: Counter
    calls: int
    threads_checked: int
    turns_lost: int
    problems: list[str]

    def report(self) -> dict[str, Any]:
        seconds = sorted(o.seconds for o in self.outcomes)
        over = [s - self.deadline_s for s in seconds if s > self.deadline_s]
        return {
            "turns": self.turns,
            "fault_rate": self.fault_rate,
            "deadline_s": self.deadline_s,
            "guard_margin_s": GUARD_MARGIN_S,
            "provider_calls": self.calls,
            "faults_injected": dict(sorted(self.faults.items())),
            "outcomes": dict(sorted(Counter(o.kind for o in self.outcomes).items())),
            "degraded_steps": dict(
                sorted(Counter(s for o in self.outcomes for s in o.degraded).items())
            ),
            "turn_ms": {
                "p50": ms(percentile(seconds, 50)),
                "p99": ms(percentile(seconds, 99)),
                "max": ms(seconds[-1]),
            },
            "past_deadline": {
                "turns": len(over),
                "past_guard_margin": sum(o > GUARD_MARGIN_S for o in over),
                "p50_ms": ms(percentile(over, 50)) if over else 0.0,
                "max_ms": ms(max(over, default=0.0)),
            },
            "threads_checked": self.threads_checked,
            "turns_lost": self.turns_lost,
            "problems": self.problems,
        }


def percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def script(provider: FakeProvider) -> None:
    provider.set_default("responder", "Here is a draft answer.")
    provider.set_default("planner", PLAN)
    provider.set_default("factuality", PASS)
    provider.set_default("personalization", PASS)
    provider.set_default("coherence", REVISE)
    provider.set_default("editor", {"changes": [], "reply": "Here is a refined answer."})


def request(conversation: int, turn: int, rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messages": [{"role": "user", "content": f"c{conversation} question {turn}"}],
        "user_id": f"user-{conversation}",
    }
    if conversation % 5 != 0:
        data["thread_id"] = f"soak-{conversation}"
    if rng.random() < 0.3:
        data["draft"] = f"c{conversation} handed-in draft {turn}"
    if rng.random() < 0.5:
        data["knowledge"] = [f"c{conversation} passage {turn}"]
    return data


async def run_turn(refiner: Refiner, data: dict[str, Any]) -> tuple[Outcome, str | None]:
    started = time.perf_counter()
    try:
        result = await refiner.arefine(data)
    except RefineError as exc:
        return Outcome(f"error:{exc.step}", time.perf_counter() - started), None
    except Exception as exc:
        return Outcome(f"untyped:{type(exc).__name__}", time.perf_counter() - started), None
    seconds = time.perf_counter() - started
    steps = [d.step for d in result.degraded or []]
    kind = "reply_degraded" if steps else "reply"
    return Outcome(kind, seconds, steps, "draft" in data), result.reply


async def conversation(
    refiner: Refiner, number: int, rng: random.Random, gate: asyncio.Semaphore
) -> tuple[list[Outcome], list[dict[str, str]]]:
    """One user's turns, one after the other; returns the outcomes and the exchanges that got a
    reply (what the thread must hold)."""
    outcomes, kept = [], []
    for turn in range(TURNS_PER_CONVERSATION):
        data = request(number, turn, rng)
        async with gate:
            outcome, reply = await run_turn(refiner, data)
        outcomes.append(outcome)
        if reply is not None and "deadline" not in outcome.degraded:
            kept += [data["messages"][0], {"role": "assistant", "content": reply}]
    return outcomes, kept


async def check_thread(
    refiner: Refiner, provider: FakeProvider, number: int, kept: list[dict[str, str]]
) -> bool:
    """A clean turn in the thread: the responder must see exactly the exchanges that got a reply."""
    probe = f"c{number} final check"
    await refiner.arefine(
        {
            "messages": [{"role": "user", "content": probe}],
            "user_id": f"user-{number}",
            "thread_id": f"soak-{number}",
        }
    )
    call = next(
        c
        for c in reversed(provider.calls_for("responder"))
        if probe in str(c.messages[-1].get("content"))
    )
    seen = [
        {"role": m["role"], "content": m["content"]}
        for m in call.messages
        if m["role"] in ("user", "assistant")
    ]
    return seen[-len(kept) - 1 : -1] == kept if kept else len(seen) == 1


async def soak(
    turns: int,
    *,
    fault_rate: float = 0.2,
    deadline_s: float = 2.0,
    concurrency: int = 8,
    seed: int = 7,
) -> Soak:
    conversations = max(1, turns // TURNS_PER_CONVERSATION)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeProvider(latency_s=0.01, seed=seed) as provider:
            script(provider)
            config = RefinerConfig(
                base_url=provider.base_url,
                api_key="soak",
                home=Path(tmp),
                planner="llm",
                critics=list(CRITICS),
                memory=False,
                kb="off",
                max_retries=1,
                timeout_s=0.5,
                deadline_s=deadline_s,
            )
            gate = asyncio.Semaphore(concurrency)
            async with Refiner(config) as refiner:
                # A process's first turn imports modules for about a second: not part of the soak.
                warm_up = {"messages": [{"role": "user", "content": "warm up"}], "thread_id": "w"}
                await refiner.arefine(warm_up)
                provider.faults, provider.error_rate = list(FAULTS), fault_rate
                runs = await asyncio.gather(
                    *(
                        conversation(refiner, n, random.Random(rng.random()), gate)
                        for n in range(conversations)
                    )
                )
                faults = Counter(
                    c.fault or f"http_{c.status}"
                    for c in provider.calls
                    if c.fault or c.status in (429, 500)
                )
                calls = len(provider.calls)
                provider.error_rate = 0.0
                checks = [
                    await check_thread(refiner, provider, n, kept)
                    for n, (_, kept) in enumerate(runs)
                    if n % 5 != 0
                ]
    outcomes = [o for outs, _ in runs for o in outs]
    problems = [
        f"{o.kind} after {o.seconds:.2f} s" for o in outcomes if o.kind.startswith("untyped")
    ]
    problems += [
        f"{o.kind} past the deadline: {o.seconds:.2f} s"
        for o in outcomes
        if o.seconds > deadline_s + GUARD_MARGIN_S + SLACK_S
    ]
    problems += [
        f"a handed-in draft was lost: {o.kind}"
        for o in outcomes
        if o.handed_draft and o.kind.startswith("error")
    ]
    lost = checks.count(False)
    if lost:
        problems.append(f"{lost} thread(s) do not hold the turns that got a reply")
    return Soak(
        turns=len(outcomes),
        fault_rate=fault_rate,
        deadline_s=deadline_s,
        outcomes=outcomes,
        faults=faults,
        calls=calls,
        threads_checked=len(checks),
        turns_lost=lost,
        problems=problems,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(
        soak(
            args.turns,
            fault_rate=args.fault_rate,
            deadline_s=args.deadline,
            concurrency=args.concurrency,
            seed=args.seed,
        )
    )
    report = {
        "command": " ".join(["python -m benchmarks.soak", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "wall_s": round(time.perf_counter() - started, 1),
        **result.report(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
