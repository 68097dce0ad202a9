"""Throughput and tail latency through `redraft serve`.

`redraft serve` runs as a subprocess on 127.0.0.1 (a free port), its upstream a FakeProvider in a
third process taking `latency_s` per call. C conversations run at once, each sending its turns
back to back with the openai SDK (the whole conversation each time, as OpenAI clients do, plus
redraft's thread id, persona facts and knowledge passage as extra body fields; a new thread every
five turns) for `duration_s`; turns in flight then finish. The turn is a full refinement with the
server's default planner (the embedding router when installed: draft, one round of four critics
that revise, the editor — three round trips). Per level: turns per second, latency percentiles,
errors by kind, the server's peak resident memory (VmRSS sampled every 50 ms) and its CPU time
per turn. The server's turn limit is raised above the largest level (REDRAFT_MAX_CONCURRENCY):
this measures how the process copes, not its admission control.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai

from benchmarks.perf_common import (
    ASPECTS,
    HISTORY,
    KNOWLEDGE,
    PERSONA,
    script_turn,
    summary,
    turn_text,
)
from benchmarks.perf_provider import RemoteProvider
from benchmarks.server import cpu_s, process_tree, redraft_serve

TURNS_PER_THREAD = 5
CLIENT_TIMEOUT_S = 120.0


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its worker processes now (Linux /proc)."""
    total = 0.0
    for one in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def cpu_wait_s(pid: int) -> float:
    """Seconds the threads of the process and its workers have been runnable but not running
    (Linux schedstat): time the machine's other work took from them."""
    total = 0
    for one in process_tree(pid):
        for stat in Path(f"/proc/{one}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(stat.read_text().split()[1])
    return total / 1e9


class PeakRss:
    """Samples a process's resident memory in a background thread; `peak` is the largest."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def conversation(
    client: openai.AsyncOpenAI,
    number: int,
    stop_at: float,
    latencies: list[float],
    errors: Counter[str],
) -> None:
    """One user's conversation: turns back to back until `stop_at`."""
    turn = 0
    messages: list[dict[str, str]] = []
    while time.perf_counter() < stop_at:
        if turn % TURNS_PER_THREAD == 0:
            messages = list(HISTORY)
        messages.append({"role": "user", "content": turn_text(number * 10_000 + turn)})
        extra = {
            "thread_id": f"c{number}-t{turn // TURNS_PER_THREAD}",
            "persona": PERSONA,
            "knowledge": KNOWLEDGE,
        }
        started = time.perf_counter()
        try:
            reply = await client.chat.completions.create(
                model="redraft", messages=messages, user=f"user-{number}", extra_body=extra
            )
        except Exception as exc:
            errors[_error_kind(exc)] += 1
            messages.pop()
            await asyncio.sleep(0.05)
        else:
            latencies.append((time.perf_counter() - started) * 1000)
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
        turn += 1


def _error_kind(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status else type(exc).__name__


async def level(url: str, pid: int, conversations: int, duration_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="benchmark", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    async with client:
        with PeakRss(pid) as memory:
            started, cpu_before, wait_before = time.perf_counter(), cpu_s(pid), cpu_wait_s(pid)
            stop_at = started + duration_s
            await asyncio.gather(
                *(
                    conversation(client, number, stop_at, latencies, errors)
                    for number in range(conversations)
                )
            )
            elapsed, cpu = time.perf_counter() - started, cpu_s(pid) - cpu_before
            waited = cpu_wait_s(pid) - wait_before
    turns = len(latencies)
    return {
        "conversations": conversations,
        "turns": turns,
        "seconds": round(elapsed, 2),
        "turns_per_s": round(turns / elapsed, 2),
        "latency_ms": summary(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "peak_rss_mb": round(memory.peak, 1),
        "server_cpu_ms_per_turn": round(cpu * 1000 / turns, 1) if turns else None,
        "server_cpu_busy": round(cpu / elapsed, 2),
        "server_waiting_for_cpu": round(waited / elapsed, 2),
    }


async def warm_up(url: str, turns: int = 3) -> None:
    """Load what the first turns load (the router's model, the path library) before measuring."""
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as client:
        for number in range(turns):
            await client.chat.completions.create(
                model="redraft",
                messages=[*HISTORY, {"role": "user", "content": turn_text(-1 - number)}],
                extra_body={"persona": PERSONA, "knowledge": KNOWLEDGE},
            )


def measure(
    provider: RemoteProvider,
    home: Path,
    *,
    levels: tuple[int, ...],
    duration_s: float,
    latency_s: float,
    planner: str,
    workers: int = 1,
) -> dict[str, Any]:
    """`workers`: `redraft serve --workers` (its CPU and memory are the processes' sum)."""
    provider.configure(latency_s=latency_s, tokens_per_s=None)
    script_turn(provider, ASPECTS)
    prefixes = ("REDRAFT_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_")  # none of this shell's
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="benchmark",
        REDRAFT_HOME=str(home),
        REDRAFT_PLANNER=planner,
        REDRAFT_MEMORY="false",
        REDRAFT_KB="off",
        REDRAFT_MAX_RETRIES="0",
        REDRAFT_MAX_CONCURRENCY=str(max(levels) * 2),
        REDRAFT_LOG_LEVEL="WARNING",
    )
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with redraft_serve(env, home / "serve.log", workers) as (url, pid):
        asyncio.run(warm_up(url, 3 * workers))
        rows = [asyncio.run(level(url, pid, c, duration_s)) for c in levels]
        peak_mb = round(sum(filter(None, (_vm_hwm_mb(one) for one in process_tree(pid)))), 1)
    single = next((r for r in rows if r["conversations"] == 1), None)
    for row in rows:
        if single and single["latency_ms"].get("p50") and row["latency_ms"].get("p99"):
            row["p99_over_single_p50"] = round(
                row["latency_ms"]["p99"] / single["latency_ms"]["p50"], 2
            )
    return {
        "latency_ms_per_call": latency_s * 1000,
        "planner": planner,
        "workers": workers,
        "duration_s_per_level": duration_s,
        "server_peak_rss_mb": peak_mb,
        "seconds": round(time.perf_counter() - started, 1),
        "levels": rows,
    }


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's peak resident memory over its whole life."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None
