"""How far past its deadline a turn ends (the overshoot), by where the deadline cuts it.

Each scenario makes one step never answer (`Fault("hang")`: an hour, far beyond the client's
timeout), so the deadline is what ends the turn. A turn is timed from the call to
`Refiner.arefine` to its return (a reply, or `RefineError`), on SQLite threads, through the real
path (ChatOpenAI → openai SDK → HTTP → FakeProvider); overshoot = that time − `deadline_s`.
The last scenario is the guard: the steps end on time but saving the thread hangs, so only
`Refiner.astream`'s guard (deadline + margin) can end the turn. The process's first turn (it
imports modules) and each refiner's first turn (it opens the thread store and builds its clients)
are run before the measured ones and not counted.

    python -m benchmarks.deadline            # writes benchmarks/results/reliability-deadline.json
    python -m benchmarks.deadline --runs 10  # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from redraft import RefineError, Refiner, RefinerConfig
from redraft.graphs.deadline import GUARD_MARGIN_S
from redraft.testing import FakeProvider, Fault

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "reliability-deadline.json"
HANG = Fault("hang")
PASS = {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}
REVISE = {
    "verdict": "revise",
    "issues": [{"span": "draft", "problem": "vague", "fix": "answer"}],
    "confidence": 0.8,
    "evidence": [],
}
PLAN = {"steps": [{"aspect": a, "reason": "bench"} for a in ("factuality", "coherence")]}

SCENARIOS = {
    "critic hangs: merge runs with the other critique": {"factuality": HANG},
    "editor hangs: the draft is returned": {"editor": HANG},
    "planner hangs: critics have no time left": {"planner": HANG},
    "responder hangs: RefineError": {"responder": HANG},
    "thread store hangs: the guard stops the turn": {},
}
GUARD = "thread store hangs: the guard stops the turn"


class HangingWrites(AsyncSqliteSaver):
    """SQLite threads whose writes never finish."""

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(3600)


def script(provider: FakeProvider, hangs: dict[str, Fault]) -> None:
    provider.reset()
    defaults = {
        "responder": "Here is a draft answer.",
        "planner": PLAN,
        "factuality": PASS,
        "coherence": REVISE,
        "editor": {"changes": [], "reply": "Here is a refined answer."},
    }
    for agent, answer in defaults.items():
        provider.set_default(agent, hangs.get(agent, answer))


async def one_turn(refiner: Refiner, thread: str) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        result = await refiner.arefine(
            {"messages": [{"role": "user", "content": "When did it open?"}], "thread_id": thread}
        )
        outcome = "reply: " + ",".join(sorted({d.step for d in result.degraded or []}))
    except RefineError as exc:
        outcome = f"RefineError({exc.step})"
    return time.perf_counter() - started, outcome


async def warm_up(provider: FakeProvider, home: Path) -> None:
    """A process's first turn imports modules for about a second (its first streamed structured
    call alone, half a second): paid once, before the measured turns."""
    script(provider, {})
    config = RefinerConfig(
        base_url=provider.base_url, api_key="bench", home=home, planner="llm", memory=False
    )
    async with Refiner(config) as refiner:
        await refiner.arefine({"messages": [{"role": "user", "content": "warm up"}]})


def summary(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


async def bench(runs: int, deadlines: list[float]) -> list[dict[str, Any]]:
    rows = []
    async with FakeProvider() as provider:
        with tempfile.TemporaryDirectory() as tmp:
            await warm_up(provider, Path(tmp))
            for deadline_s in deadlines:
                config = RefinerConfig(
                    base_url=provider.base_url,
                    api_key="bench",
                    home=Path(tmp),
                    planner="llm",
                    critics=["factuality", "coherence"],
                    memory=False,
                    kb="off",
                    max_retries=0,
                    deadline_s=deadline_s,
                )
                for name, hangs in SCENARIOS.items():
                    script(provider, hangs)
                    path = str(Path(tmp) / f"{deadline_s}-{len(rows)}.sqlite")
                    saver_class = HangingWrites if name == GUARD else AsyncSqliteSaver
                    async with saver_class.from_conn_string(path) as saver:
                        async with Refiner(config, checkpointer=saver) as refiner:
                            await one_turn(refiner, "first")  # opens the store, builds clients
                            turns = [await one_turn(refiner, f"t{n}") for n in range(runs)]
                    over = [seconds - deadline_s for seconds, _ in turns]
                    rows.append(
                        {
                            "scenario": name,
                            "deadline_s": deadline_s,
                            "runs": runs,
                            "outcomes": sorted({outcome for _, outcome in turns}),
                            "overshoot": summary(over),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--deadlines", default="0.5,1,2")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    deadlines = [float(d) for d in args.deadlines.split(",")]
    started = time.perf_counter()
    rows = asyncio.run(bench(args.runs, deadlines))
    report = {
        "command": " ".join(["python -m benchmarks.deadline", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "guard_margin_s": GUARD_MARGIN_S,
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
