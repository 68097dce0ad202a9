"""No model load inside a turn: while the router or the embedding model loads, a turn with a
deadline goes without them (said in `degraded`); the server reports ready once preloaded;
`serve --workers` shares one port and the thread database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import Future

import httpx
import pytest

from benchmarks.cold_start import run_once
from redraft import Refiner
from redraft import embeddings as embeddings_module
from redraft.config import ServerConfig
from redraft.routing import router as router_module
from redraft.routing.router import Router
from redraft.server.app import create_app
from tests.conftest import PASS, plan, user
from tests.servers import REPO, running, server_env, tail

TURN = {"messages": [user("Which laptop should I buy for university?")], "draft": "Any laptop."}


@pytest.fixture
def slow_router(monkeypatch):
    """Routers load only when the test sets the returned event (a fresh router registry, so
    an earlier test's loaded router does not count)."""
    monkeypatch.setattr(router_module, "_routers", {})
    gate, abandoned = threading.Event(), threading.Event()
    real = Router.load

    def load(self):
        if not gate.wait(60) or abandoned.is_set():
            raise RuntimeError("the test ended before the router was let load")
        return real(self)

    monkeypatch.setattr(Router, "load", load)
    yield gate
    abandoned.set()
    gate.set()


def plan_problems(result) -> list[str]:
    return [d.reason for d in result.degraded or [] if d.step == "plan"]


async def test_the_router_planner_checks_every_aspect_while_the_router_loads(
    provider, http_config, slow_router, local_embeddings
):
    for critic in ("factuality", "personalization", "coherence", "safety"):
        provider.set_default(critic, PASS)
    started = time.perf_counter()
    async with Refiner(http_config(planner="router", deadline_s=20)) as refiner:
        result = await refiner.arefine(TURN)
    assert time.perf_counter() - started < 10  # far from the deadline: nothing waited for it
    assert result.plan.source == "all"
    assert plan_problems(result) == ["the router is still loading: every aspect instead"]


async def test_hybrid_asks_the_llm_planner_while_the_router_loads(
    provider, http_config, slow_router, local_embeddings
):
    provider.script("planner", plan("coherence"))
    provider.set_default("coherence", PASS)
    async with Refiner(http_config(planner="hybrid", deadline_s=20)) as refiner:
        result = await refiner.arefine(TURN)
    assert len(provider.calls_for("planner")) == 1
    assert result.plan.source == "llm" and result.plan.aspects == ["coherence"]
    assert plan_problems(result) == ["the router is still loading: the LLM planner instead"]


async def test_without_a_deadline_the_turn_waits_for_the_router(
    provider, http_config, slow_router, local_embeddings
):
    provider.set_default("personalization", PASS)
    threading.Timer(0.3, slow_router.set).start()
    async with Refiner(http_config(planner="router")) as refiner:
        result = await refiner.arefine(TURN)
    assert result.plan.source == "router" and not plan_problems(result)


async def test_memory_recall_is_skipped_while_the_model_loads(provider, http_config, monkeypatch):
    monkeypatch.setattr(embeddings_module, "model_loaded", lambda: False)
    monkeypatch.setattr(embeddings_module, "local_model_installed", lambda: True)
    monkeypatch.setattr(embeddings_module, "start_loading", lambda: Future())  # never done
    config = http_config(memory=True, memory_learn=False, deadline_s=20)
    provider.set_default("planner", plan())
    async with Refiner(config) as refiner:
        await (await refiner.personas()).set_name("maya", "Maya")
        turn = {"messages": [user("What should I cook?")], "user_id": "maya"}
        result = await refiner.arefine(turn)
    memory = [d.reason for d in result.degraded or [] if d.step == "memory"]
    assert memory == ["persona memory recall skipped: the embedding model is still loading"]
    # The profile needs no vectors: it still reaches the draft.
    [draft] = provider.calls_for("responder")
    assert any("The user's name is Maya." in str(m["content"]) for m in draft.messages)


async def test_readyz_answers_once_preloading_is_done(tmp_path, monkeypatch):
    loaded = asyncio.Event()

    async def preload(self):
        await loaded.wait()
        return {}

    monkeypatch.setattr(Refiner, "preload", preload)
    app = create_app(server=ServerConfig(preload=True))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            loading = await client.get("/readyz")
            assert loading.status_code == 503 and loading.json() == {"status": "loading"}
            assert (await client.get("/healthz")).status_code == 200  # alive meanwhile
            loaded.set()
            for _ in range(100):
                await asyncio.sleep(0.01)
                if (ready := await client.get("/readyz")).status_code == 200:
                    break
            assert ready.status_code == 200 and ready.json() == {"status": "ok"}


async def test_without_preload_readyz_answers_at_once(tmp_path):
    app = create_app(server=ServerConfig(preload=False))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            assert (await client.get("/readyz")).status_code == 200


def test_a_fresh_process_first_turn_returns_within_its_deadline(provider):
    """From outside: a new process, router planner, memory on, deadline_s=4; the model is not
    loaded yet, so the turn must not wait for it."""
    run = run_once("deadline", provider.base_url)
    assert run["first_turn_s"] <= 4.6, run
    assert {"plan", "memory"} <= set(run["first_degraded"]), run
    assert run["first_plan"] == "all"


def test_workers_refuse_threads_kept_in_memory(tmp_path):
    env = server_env(REDRAFT_HOME=str(tmp_path), REDRAFT_CHECKPOINTER="memory")
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "serve", "--port", "0", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr and "postgres" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_workers_share_one_port_and_the_sqlite_threads(provider, tmp_path):
    env = server_env(
        REDRAFT_HOME=str(tmp_path / "home"),
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="test-key",
        REDRAFT_PLANNER="llm",
        REDRAFT_CRITICS="coherence",
    )
    provider.set_default("planner", plan())
    args = [sys.executable, "-m", "redraft", "serve", "--port", "0", "--workers", "2"]
    log = tmp_path / "serve.log"
    with running([*args, "--no-preload"], env, log, pipe_stdout=True, cwd=REPO) as process:
        url = process.stdout.readline().split()[-1]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError(tail(log))

        def turn(client: httpx.Client, thread: str, text: str) -> httpx.Response:
            body = {"model": "redraft", "messages": [user(text)], "thread_id": thread}
            return client.post(f"{url}/v1/chat/completions", json=body, timeout=60)

        # Fresh connections each time, so that turns of one thread land on either worker.
        for i in range(6):
            with httpx.Client() as client:
                assert turn(client, "t1", f"message {i}").status_code == 200, tail(log)
        last = provider.calls_for("responder")[-1]
        assert all(f"message {i}" in str(last.messages) for i in range(6))
        pids = set()
        for line in log.read_text().splitlines():
            if "Started server process" in line:
                pids.add(line.split("[")[-1].rstrip("]"))
        assert len(pids) == 2, tail(log)
