"""Framework overhead: what a turn costs beyond the provider's own time.

The FakeProvider (its own process) answers at once (latency 0, tokens free). The turn is a full
refinement: parallel strategy, LLM planner, three critics that revise, the editor — six calls,
four round trips. Per turn:

- overhead = turn time − provider time on the critical path (each round trip's slowest call, as
  the provider logged it). It holds everything else: redraft's graph, LangGraph, LangChain, the
  openai SDK, httpx, the loopback, and the provider's own HTTP framing (uvicorn/FastAPI).
- CPU: CPU time of the benchmark process during the turn (every thread; the provider's process
  is not in it). On a loaded machine this is steadier than the wall time.

Measured with no checkpointer (no thread), SQLite and PostgreSQL threads (5 turns per thread),
cells interleaved turn by turn; then the same turn in-process with `ScriptedChatModel` (no HTTP,
no openai SDK: the graph, LangGraph and LangChain's chat-model layer only), and with the router.
The client stack is costed call by call (`client_calls`), and one run is profiled with
pyinstrument to say where the CPU time goes. Last, `lean_peer`: a five-call turn's CPU against
the same five calls made by a minimal LangGraph graph on the bare openai SDK
(`benchmarks/lean_peer.py`).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import lean_peer
from benchmarks.perf_common import (
    ASPECTS,
    EDIT,
    median,
    provider_seconds,
    refiner_config,
    request,
    round_trips,
    script_turn,
    summary,
    turn_text,
)
from benchmarks.perf_provider import RemoteProvider
from redraft import Refiner
from redraft.testing import ScriptedChatModel

CRITICS = 3
THREAD_TURNS = 5
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Cell:
    name: str
    backend: str  # none | sqlite | postgres
    path: str  # http | in-process
    planner: str = "llm"


def database_url() -> str:
    return os.environ.get("REDRAFT_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL


def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL cannot be measured, or None when it can."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


def cells(*, postgres: bool, router: bool) -> list[Cell]:
    backends = ["none", "sqlite", *(["postgres"] if postgres else [])]
    chosen = [Cell(f"http/{b}", b, "http") for b in backends]
    chosen += [Cell(f"in-process/{b}", b, "in-process") for b in backends]
    if router:
        chosen.append(Cell("http/none/router", "none", "http", planner="router"))
    return chosen


def turn_request(cell: Cell, number: int) -> dict[str, Any]:
    """The critical-path turn; in a thread, THREAD_TURNS turns per thread, each after the first
    sending only its new message (the thread keeps the rest)."""
    turn = request(number)
    if cell.backend != "none":
        if number % THREAD_TURNS:
            turn["messages"] = turn["messages"][-1:]
        turn["thread_id"] = f"{cell.name}-{number // THREAD_TURNS}"
    return turn


@contextlib.asynccontextmanager
async def refiners(
    provider: RemoteProvider, home: Path, chosen: list[Cell], url: str
) -> AsyncIterator[dict[Cell, tuple[Refiner, ScriptedChatModel | None]]]:
    built: dict[Cell, tuple[Refiner, ScriptedChatModel | None]] = {}
    try:
        for cell in chosen:
            settings: dict[str, Any] = {"planner": cell.planner}
            if cell.planner == "router":  # it would choose all four for this turn
                settings["critics"] = list(ASPECTS[:CRITICS])
            if cell.backend != "none":
                settings["checkpointer"] = cell.backend
            if cell.backend == "postgres":
                settings["database_url"] = url
            model = ScriptedChatModel() if cell.path == "in-process" else None
            if model is not None:
                script_turn(model, ASPECTS[:CRITICS])
            config = refiner_config(provider, home / cell.name.replace("/", "-"), **settings)
            built[cell] = (Refiner(config, model=model), model)
        yield built
    finally:
        for refiner, _ in built.values():
            await refiner.aclose()


async def measure(
    provider: RemoteProvider,
    home: Path,
    *,
    turns: int,
    profile_turns: int,
    router: bool,
) -> dict[str, Any]:
    provider.configure(latency_s=0.0, tokens_per_s=None)
    script_turn(provider, ASPECTS[:CRITICS])
    url = database_url()
    problem = postgres_problem(url)
    chosen = cells(postgres=problem is None, router=router)
    samples: dict[Cell, list[dict[str, float]]] = {cell: [] for cell in chosen}
    started = time.perf_counter()
    async with refiners(provider, home, chosen, url) as built:
        for number in range(turns + THREAD_TURNS):  # the first thread of each cell warms up
            for cell in chosen:
                refiner, model = built[cell]
                sample = await one_turn(provider, refiner, model, cell, number)
                if number >= THREAD_TURNS:
                    samples[cell].append(sample)
        profile = await profile_turns_of(provider, built[chosen[0]][0], chosen[0], profile_turns)
    peer = await lean_peer.measure(
        provider, home / "lean-peer", turns=turns, profile_turns=profile_turns
    )
    return {
        "latency_ms": 0,
        "turn": f"parallel strategy, {CRITICS} critics that revise, editor: "
        f"{2 + CRITICS + 1} calls, 4 round trips (3 with the router)",
        "turns_per_cell": turns,
        "postgres": {"url": url, "skipped": problem},
        "seconds": round(time.perf_counter() - started, 1),
        "cells": [cell_row(cell, samples[cell]) for cell in chosen],
        "client_calls": await client_calls(provider, home, calls=max(20, turns)),
        "profile": profile,
        "lean_peer": peer,
    }


async def one_turn(
    provider: RemoteProvider,
    refiner: Refiner,
    model: ScriptedChatModel | None,
    cell: Cell,
    number: int,
) -> dict[str, float]:
    since = provider.count()
    if model is not None:
        model.reset()
        script_turn(model, ASPECTS[:CRITICS])
    cpu, started = time.process_time(), time.perf_counter()
    result = await refiner.arefine(turn_request(cell, number))
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    provider_s = 0.0 if model is not None else provider_seconds(round_trips(provider.calls(since)))
    return {
        "wall_ms": wall_s * 1000,
        "provider_ms": provider_s * 1000,
        "cpu_ms": cpu_s * 1000,
        "calls": result.usage.llm_calls,
    }


def cell_row(cell: Cell, samples: list[dict[str, float]]) -> dict[str, Any]:
    overhead = [s["wall_ms"] - s["provider_ms"] for s in samples]
    expected = 2 + CRITICS + 1 - (cell.planner == "router")  # draft, plan, critics, editor
    return {
        "cell": cell.name,
        "path": cell.path,
        "backend": cell.backend,
        "planner": cell.planner,
        "calls_as_intended": all(s["calls"] == expected for s in samples),
        "overhead_ms": summary(overhead),
        "cpu_ms": summary([s["cpu_ms"] for s in samples]),
        "wall_ms": summary([s["wall_ms"] for s in samples]),
        "provider_ms": round(median([s["provider_ms"] for s in samples]), 2),
    }


# ── the client stack, call by call ─────────────────────────────────────────────────────────


async def client_calls(provider: RemoteProvider, home: Path, *, calls: int) -> list[dict[str, Any]]:
    """CPU per call of each layer between redraft and the provider, against the same provider:
    the openai SDK alone, then through LangChain, then redraft's structured call helpers."""
    import openai

    from redraft.agents.factuality import FactualityOutput
    from redraft.agents.prompting import agent_system, user_message
    from redraft.llm.calls import call_structured, make_chat_model, stream_structured
    from redraft.state import EditorOutput

    config = refiner_config(provider, home)
    model = make_chat_model(config.model, config)
    critic = [agent_system("factuality", "Check the reply."), user_message(turn_text(0))]
    editor = [agent_system("editor", "Rewrite the reply."), user_message(turn_text(0))]
    wire = [{"role": "system", "content": critic[0].content}, {"role": "user", "content": "x"}]
    client = openai.AsyncOpenAI(base_url=provider.base_url, api_key="benchmark", max_retries=0)
    words = len(EDIT["reply"].split())
    layers: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("openai SDK: chat.completions.create (text)", lambda: _create(client, wire)),
        (
            "openai SDK: chat.completions.parse (pydantic schema)",
            lambda: client.chat.completions.parse(
                model=config.model, messages=wire, response_format=FactualityOutput
            ),
        ),
        ("LangChain ChatOpenAI.ainvoke (text)", lambda: model.ainvoke(critic)),
        (
            "redraft call_structured (critic output)",
            lambda: call_structured(
                model, FactualityOutput, critic, agent="factuality", method="json_schema"
            ),
        ),
        (
            "redraft call_structured (editor output)",
            lambda: call_structured(
                model, EditorOutput, editor, agent="editor", method="json_schema"
            ),
        ),
        (
            f"redraft stream_structured (editor output, reply of {words} words streamed)",
            lambda: stream_structured(
                model,
                EditorOutput,
                editor,
                agent="editor",
                method="json_schema",
                field="reply",
                on_delta=lambda _: None,
            ),
        ),
    ]
    rows = []
    async with client:
        for name, call in layers:
            for _ in range(3):
                await call()
            cpu_ms = []
            for _ in range(calls):
                started = time.process_time()
                await call()
                cpu_ms.append((time.process_time() - started) * 1000)
            rows.append({"layer": name, "cpu_ms": summary(cpu_ms)})
    return rows


async def _create(client: Any, messages: list[dict[str, Any]]) -> Any:
    return await client.chat.completions.create(model="gpt-4o-mini", messages=messages)


# ── where the time goes ────────────────────────────────────────────────────────────────────

STDLIB = "python (stdlib)"
IDLE = {"select", "poll"}
"""Functions in which the event loop waits for I/O (the selector's and epoll's)."""


async def profile_turns_of(
    provider: RemoteProvider, refiner: Refiner, cell: Cell, turns: int
) -> dict[str, Any]:
    """Sample the process's main thread (the event loop) for `turns` turns with pyinstrument,
    and summarise: CPU share per package (self time), the hottest functions (self time), and
    the functions that cost the most with what they call (outside the standard library).
    Idle time (waiting in the event loop's poll) is left out of the shares."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    for number in range(turns):
        await refiner.arefine(turn_request(cell, 10_000 + number))
    profiler.stop()
    session = profiler.last_session
    assert session is not None
    tree = summarise(session.root_frame())
    busy = sum(tree["packages"].values()) or 1.0
    per_turn = 1000 / turns

    def shares(table: dict[str, float], top: int) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda item: -item[1])[:top]
        return [
            {"name": name, "ms_per_turn": round(s * per_turn, 2), "share": round(s / busy, 3)}
            for name, s in ranked
        ]

    return {
        "cell": cell.name,
        "turns": turns,
        "interval_ms": 0.5,
        "sampled_ms_per_turn": round(busy * per_turn, 2),
        "idle_ms_per_turn": round(tree["idle"] * per_turn, 2),
        "packages": shares(tree["packages"], 12),  # by library, its stdlib calls included
        "hottest_functions": shares(tree["functions"], 15),
        "inclusive": shares(tree["inclusive"], 15),
        "note": "sampled with pyinstrument (its own cost inflates the absolute figures; read "
        "the shares). Self time: in the function itself; inclusive: in the function and "
        "what it calls (counted once per stack), standard library left out.",
    }


def package_of(path: str | None) -> str:
    if not path:
        return "?"
    found = re.search(r"site-packages/([^/]+)", path)
    if found:
        return found.group(1).removesuffix(".py")
    if "/redraft/" in path:
        return "redraft"
    if "/benchmarks/" in path:
        return "benchmarks"
    return STDLIB


def summarise(root: Any) -> dict[str, Any]:
    """From a pyinstrument frame tree: CPU per library (standard-library time counted to the
    library that called it; "event loop" when none did), self time per function, and inclusive
    time per function outside the standard library."""
    packages: defaultdict[str, float] = defaultdict(float)
    functions: defaultdict[str, float] = defaultdict(float)
    inclusive: defaultdict[str, float] = defaultdict(float)
    idle = 0.0
    stack: list[tuple[Any, str, frozenset[str]]] = [(root, "event loop", frozenset())]
    while stack:
        frame, owner, seen = stack.pop()
        package = package_of(frame.file_path)
        name = f"{package}: {frame.class_name + '.' if frame.class_name else ''}{frame.function}"
        if frame.function in IDLE and package == STDLIB:
            idle += frame.time
            continue
        if package != STDLIB:
            owner = package
        self_time = sum(c.time for c in frame.children if c.is_synthetic)
        packages[owner] += self_time
        functions[name] += self_time
        if package not in (STDLIB, "benchmarks") and name not in seen:
            inclusive[name] += frame.time
        stack.extend((c, owner, seen | {name}) for c in frame.children if not c.is_synthetic)
    return {"packages": packages, "functions": functions, "inclusive": inclusive, "idle": idle}
