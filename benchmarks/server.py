"""What `redraft serve` adds to a turn, and how many turns one process serves at once.

(a) Overhead: the same turn (parallel strategy: draft, plan, three critics that pass — five LLM
    calls to a FakeProvider answering at once) run in-process with `Refiner.arefine`, and through
    the openai SDK → `redraft serve` (a subprocess) → the same FakeProvider. Sequential turns,
    alternating; median and p95 per path, and the median difference.
(b) Concurrency: the FakeProvider takes 250 ms per call (a turn is then ≥ 750 ms: draft, plan,
    one parallel critic round); C clients each send turns back to back for the run's duration.
    Turns per second and latency percentiles, against the ideal C / 0.75 s, and the server
    process's CPU time per turn and busy fraction (1.0 = one core: its event loop is saturated).

    python -m benchmarks.server            # writes benchmarks/results/server.json
    python -m benchmarks.server --quick    # fewer turns: server-quick.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai

from redraft import Refiner, RefinerConfig
from redraft.testing import FakeProvider

HERE = Path(__file__).parent
CRITICS = ("factuality", "personalization", "coherence")
PASS = {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}
PLAN = {"steps": [{"aspect": a, "reason": "benchmark"} for a in CRITICS]}
TURN = [{"role": "user", "content": "When was the Eiffel Tower finished?"}]
CALL_LATENCY_S = 0.25


def script(provider: FakeProvider) -> None:
    provider.set_default("planner", PLAN)
    for critic in CRITICS:
        provider.set_default(critic, PASS)


def environment(provider: FakeProvider, home: Path) -> dict[str, str]:
    prefixes = ("REDRAFT_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="k",
        REDRAFT_HOME=str(home),
        REDRAFT_PLANNER="llm",
        REDRAFT_CRITICS=",".join(CRITICS),
        REDRAFT_MAX_RETRIES="0",
        REDRAFT_MAX_CONCURRENCY="256",
        REDRAFT_LOG_LEVEL="WARNING",
    )
    return env


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process and its live child processes (`serve --workers`)
    so far (Linux /proc)."""
    total = 0.0
    for one in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        one = queue.pop()
        found.append(one)
        for task in Path(f"/proc/{one}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                queue.extend(int(child) for child in task.read_text().split())
    return found


@contextlib.contextmanager
def redraft_serve(env: dict[str, str], log: Path, workers: int = 1):
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redraft",
                "serve",
                "--port",
                "0",
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=output,
            text=True,
        )
    try:
        url = process.stdout.readline().split()[-1]
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining
        # Ready: preloaded (the embedding model, the router). With several workers a probe
        # reaches any of them, so every one must have said so a few times in a row.
        deadline, in_a_row = time.monotonic() + 180, 0
        while time.monotonic() < deadline and in_a_row < 10:
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{url}/readyz").status_code == 200
                in_a_row = in_a_row + 1 if ready else 0
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
    }


def overhead(provider: FakeProvider, url: str, config: RefinerConfig, turns: int) -> dict:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    refiner = Refiner(config)
    direct, served = [], []
    for _ in range(5):  # warm both paths up
        refiner.refine({"messages": TURN})
        client.chat.completions.create(model="m", messages=TURN)
    for _ in range(turns):
        started = time.perf_counter()
        refiner.refine({"messages": TURN})
        direct.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.chat.completions.create(model="m", messages=TURN)
        served.append((time.perf_counter() - started) * 1000)
    refiner.close()
    return {
        "in_process": summary(direct),
        "served": summary(served),
        "added_p50_ms": round(statistics.median(served) - statistics.median(direct), 2),
    }


async def concurrency(url: str, pid: int, clients: int, duration_s: float) -> dict:
    latencies: list[float] = []
    stop = time.perf_counter() + duration_s

    async def user(client: openai.AsyncOpenAI) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await client.chat.completions.create(model="m", messages=TURN)
            latencies.append((time.perf_counter() - started) * 1000)

    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as client:
        started, cpu_before = time.perf_counter(), cpu_s(pid)
        await asyncio.gather(*(user(client) for _ in range(clients)))
        elapsed, cpu = time.perf_counter() - started, cpu_s(pid) - cpu_before
    ideal = clients / (3 * CALL_LATENCY_S)
    return {
        "clients": clients,
        "turns": len(latencies),
        "turns_per_s": round(len(latencies) / elapsed, 2),
        "ideal_turns_per_s": round(ideal, 2),
        "server_cpu_ms_per_turn": round(cpu * 1000 / len(latencies), 1),
        "server_cpu_busy": round(cpu / elapsed, 2),
        **summary(latencies),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    turns, duration_s = (40, 5.0) if args.quick else (300, 20.0)
    results: dict = {
        "command": "python -m benchmarks.server" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory() as tmp, FakeProvider() as provider:
        script(provider)
        env = environment(provider, Path(tmp) / "home")
        config = RefinerConfig(
            base_url=provider.base_url,
            api_key="k",
            planner="llm",
            critics=list(CRITICS),
            max_retries=0,
            checkpointer="memory",
            log_level="WARNING",
        )
        with redraft_serve(env, Path(tmp) / "serve.log") as (url, pid):
            results["overhead"] = overhead(provider, url, config, turns)
            provider.latency_s = CALL_LATENCY_S
            results["concurrency"] = [
                asyncio.run(concurrency(url, pid, clients, duration_s)) for clients in (1, 8, 32)
            ]
    name = "server-quick.json" if args.quick else "server.json"
    (HERE / "results" / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
