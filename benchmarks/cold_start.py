"""Cold start: from process start to the first turn's reply, in a fresh process each time.

    python -m benchmarks.cold_start                # 3 fresh processes per case
    python -m benchmarks.cold_start --runs 5 --json benchmarks/results/cold-start.json

The upstream is a FakeProvider in a process of its own, answering at once. Each run starts a new
Python process (nothing loaded, nothing cached) that builds a `Refiner` (router planner, persona
memory on a SQLite file) and refines one turn, then a second, warm one. Cases:

- `deadline`: no preload, `deadline_s=4`: the first turn must not wait for the embedding model;
  it checks every aspect and skips memory recall (said in `degraded`) while the model loads in
  the background.
- `preload`: `async with Refiner(preload=True)`: everything is loaded before the first turn.
- `no-deadline`: no preload, no deadline: the first turn waits for the load (off the event loop).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.perf_provider import remote_provider

CASES: dict[str, dict[str, Any]] = {
    "deadline": {"preload": False, "deadline_s": 4.0},
    "preload": {"preload": True, "deadline_s": None},
    "no-deadline": {"preload": False, "deadline_s": None},
}
TURN = {
    "messages": [{"role": "user", "content": "Which vitamins should I take for my diet?"}],
    "user_id": "maya",
}
LIMIT_S = 120.0
"""A child that has not answered by then is killed and the run reported as failed."""


async def _child(preload: bool, deadline_s: float | None) -> dict[str, Any]:
    """One fresh process's timeline, seconds since the interpreter started."""
    from redraft import Refiner, RefinerConfig

    origin = float(os.environ["COLD_START_T0"])  # the parent's clock just before the spawn
    imported = time.perf_counter() - origin
    config = RefinerConfig(planner="router", memory=True, deadline_s=deadline_s)
    async with Refiner(config, preload=preload) as refiner:
        ready = time.perf_counter() - origin
        first = await refiner.arefine(TURN)
        first_done = time.perf_counter() - origin
        second = await refiner.arefine(TURN)
        second_done = time.perf_counter() - origin
    return {
        "import_s": imported,
        "ready_s": ready,
        "first_turn_s": first_done - ready,
        "first_reply_s": first_done,
        "second_turn_s": second_done - first_done,
        "first_degraded": [d.step for d in first.degraded or []],
        "first_reasons": [d.reason for d in first.degraded or []],
        "first_timings": first.timings,
        "first_plan": first.plan.source,
        "second_plan": second.plan.source,
    }


def run_once(case: str, base_url: str) -> dict[str, Any]:
    """One fresh process; times measured from just before it was started."""
    settings = CASES[case]
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "REDRAFT_HOME": home,
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "bench",
            "REDRAFT_LOG_LEVEL": "WARNING",
        }
        code = (
            "import asyncio, json, sys; from benchmarks.cold_start import _child; "
            f"print(json.dumps(asyncio.run(_child({settings['preload']!r}, "
            f"{settings['deadline_s']!r}))))"
        )
        started = time.perf_counter()  # CLOCK_MONOTONIC: the same clock in the child
        env["COLD_START_T0"] = repr(started)
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            cwd=Path(__file__).parent.parent,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{case}: the child failed:\n{done.stderr[-2000:]}")
    return {"case": case, **json.loads(done.stdout.strip().splitlines()[-1])}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | list[str]]]:
    table: dict[str, dict[str, Any]] = {}
    for case in CASES:
        mine = [r for r in rows if r["case"] == case]
        if not mine:
            continue
        table[case] = {
            key: round(statistics.median(r[key] for r in mine), 3)
            for key in ("import_s", "ready_s", "first_turn_s", "first_reply_s", "second_turn_s")
        }
        table[case]["first_turn_max_s"] = round(max(r["first_turn_s"] for r in mine), 3)
        table[case]["first_degraded"] = sorted({s for r in mine for s in r["first_degraded"]})
        table[case]["first_plan"] = sorted({r["first_plan"] for r in mine})
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per case (3)")
    parser.add_argument("--case", choices=list(CASES), action="append", help="default: all")
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    rows: list[dict[str, Any]] = []
    with remote_provider() as provider:
        base_url = provider.base_url
        for _ in range(args.runs):
            for case in args.case or list(CASES):
                rows.append(run_once(case, base_url))
                print(json.dumps(rows[-1]), flush=True)
    table = summarise(rows)
    print(json.dumps(table, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "summary": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
