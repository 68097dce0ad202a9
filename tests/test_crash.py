"""Crash recovery: `redraft serve` killed with SIGKILL mid-turn, on SQLite and on PostgreSQL.

Before the kill, thread A has one completed turn, thread Q has a pending safety question, and
turns of A and B are mid-merge (the editor's call never answers). After a restart on the same
storage: A holds its completed turn and nothing of the killed one, Q's question still resumes
with the user's answer, B starts clean, and the SQLite files pass `PRAGMA integrity_check`.
A second test kills the server at random moments under load, three times over, and checks
every thread against the turns its client saw complete.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redraft.testing import FakeProvider, Fault
from tests.conftest import PASS, plan, revise, user
from tests.servers import first_line, running, server_env, wait_until_up

ASK = {
    "verdict": "ask",
    "domain": "Career",
    "risk": "high",
    "completeness": 1,
    "ask_attribute": "Emotional State",
    "question": "How are you feeling about it?",
}


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """`redraft serve` in its own process group: yields its URL and the group to kill."""
    args = [sys.executable, "-m", "redraft", "serve", "--host", "127.0.0.1", "--port", "0"]
    with running(args, env, log, pipe_stdout=True) as process:
        url = first_line(process, log).split()[-1]
        wait_until_up(f"{url}/healthz", process, log)
        yield url, process.pid


def kill(group: int) -> None:
    os.killpg(group, signal.SIGKILL)
    time.sleep(0.5)  # the kernel has closed its files and sockets


def script(upstream: FakeProvider) -> None:
    """Answers by content, since turns of several threads run at once."""
    upstream.set_default(
        "responder",
        lambda call: f"Draft for {call.messages[-1]['content'][:40]}",
    )
    upstream.set_default(
        "planner", lambda call: plan("safety") if "Q-" in str(call.messages) else plan("coherence")
    )
    upstream.set_default("coherence", revise("Draft", "Reply"))
    upstream.set_default("editor", lambda call: {"changes": [], "reply": "Refined reply."})
    upstream.set_default(
        "safety",
        lambda call: {**PASS, "completeness": 4} if "Q-answer" in str(call.messages) else ASK,
    )
    upstream.set_default("safety_answer", {"answered": True, "value": "anxious"})
    upstream.set_default("memory", {"facts": []})


def turn(url: str, user_id: str, thread: str, text: str, timeout: float = 120) -> dict:
    body = {"model": "redraft", "user": user_id, "messages": [user(text)], "thread_id": thread}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()


def history_seen(upstream: FakeProvider, text: str) -> list[str]:
    """The conversation the responding agent was given for the turn whose message is `text`."""
    call = next(c for c in upstream.calls_for("responder") if c.messages[-1]["content"] == text)
    turns = [m for m in call.messages[1:] if m["role"] in ("user", "assistant")]
    return [m["content"] for m in turns if not m["content"].startswith("<")]  # not the context


def integrity(home: Path) -> dict[str, str]:
    found = {}
    for path in sorted(home.glob("*.sqlite")):
        with contextlib.closing(sqlite3.connect(path)) as db:
            found[path.name] = db.execute("PRAGMA integrity_check").fetchone()[0]
    return found


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request, tmp_path) -> dict[str, str]:
    env = {"REDRAFT_HOME": str(tmp_path / "home")}
    if request.param == "postgres":
        env["REDRAFT_DATABASE_URL"] = request.getfixturevalue("database_url")
    return env


def test_sigkill_mid_turn_loses_nothing_completed(storage, tmp_path):
    run = uuid.uuid4().hex[:8]  # PostgreSQL is shared by test runs
    with FakeProvider() as upstream:
        script(upstream)
        env = server_env(
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="upstream",
            REDRAFT_PLANNER="llm",
            REDRAFT_CRITICS="coherence,safety",
            REDRAFT_MAX_RETRIES="0",
            **storage,
        )
        a, b, q = (f"{name}-{run}" for name in ("A", "B", "Q"))
        with serve(env, tmp_path / "first.log") as (url, group):
            first = turn(url, a, "t", "A-1 hello")
            asked = turn(url, q, "t", "Q-1 I lost my job, what now?")
            assert asked["redraft"]["question"]["attribute"] == "Emotional State"
            upstream.set_default("editor", Fault("hang"))
            pending = [
                threading.Thread(target=_attempt, args=(url, user_id, text), daemon=True)
                for user_id, text in ((a, "A-2 killed mid-turn"), (b, "B-1 killed mid-turn"))
            ]
            for thread in pending:
                thread.start()
            _wait_for(lambda: sum(c.ended is None for c in upstream.calls_for("editor")) == 2)
            kill(group)
        script(upstream)
        with serve(env, tmp_path / "second.log") as (url, _):
            turn(url, a, "t", "A-3 after the restart")
            resumed = turn(url, q, "t", "Q-answer: honestly, anxious")
            turn(url, b, "t", "B-2 after the restart")
    # A holds its completed turn, and nothing of the one that was killed
    assert history_seen(upstream, "A-3 after the restart") == [
        "A-1 hello",
        first["choices"][0]["message"]["content"],
        "A-3 after the restart",
    ]
    # the pending question resumed: the answer was read, the original message answered again
    assert [q["attribute"] for q in resumed["redraft"]["asked"]] == ["Emotional State"]
    assert resumed["redraft"]["question"] is None
    assert history_seen(upstream, "Q-answer: honestly, anxious") == [
        "Q-1 I lost my job, what now?",
        asked["choices"][0]["message"]["content"],
        "Q-answer: honestly, anxious",
    ]
    assert history_seen(upstream, "B-2 after the restart") == ["B-2 after the restart"]
    if "REDRAFT_DATABASE_URL" not in storage:
        assert set(integrity(Path(storage["REDRAFT_HOME"])).values()) == {"ok"}


def test_random_kills_under_load_keep_every_thread_whole(storage, tmp_path):
    """Three kills at random moments while six conversations run; after each restart, every
    thread holds exactly the turns its client saw complete — plus, at most, the turn in flight
    at each kill, whole (saved before its reply could be sent)."""
    rng = random.Random(5)
    run = uuid.uuid4().hex[:8]
    users = [f"L{n}-{run}" for n in range(6)]
    done: dict[tuple[str, int], list[str]] = {(u, r): [] for u in users for r in range(3)}
    with FakeProvider(latency_s=0.05) as upstream:
        script(upstream)
        # every turn teaches the memory a fact: the persona store is written to during the kills
        upstream.set_default(
            "memory", lambda call: {"facts": [{"action": "add", "text": "A fact."}]}
        )
        env = server_env(
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="upstream",
            REDRAFT_PLANNER="llm",
            REDRAFT_CRITICS="coherence",
            REDRAFT_MAX_RETRIES="0",
            **storage,
        )
        for round_ in range(3):
            with serve(env, tmp_path / f"round-{round_}.log") as (url, group):
                turn(url, f"warm-{run}", "w", "warm up")  # loads the embedding model
                stop = threading.Event()
                workers = [
                    threading.Thread(target=_talk, args=(url, u, round_, done, stop), daemon=True)
                    for u in users
                ]
                for worker in workers:
                    worker.start()
                time.sleep(rng.uniform(1.0, 3.0))
                kill(group)
                stop.set()
                for worker in workers:
                    worker.join(timeout=30)
        with serve(env, tmp_path / "check.log") as (url, _):
            for u in users:
                turn(url, u, "t", f"{u} final check")
    assert sum(len(texts) for texts in done.values()) > 6  # turns completed between kills
    for u in users:
        seen = history_seen(upstream, f"{u} final check")[:-1]
        said = seen[0::2]  # the thread's user turns, each followed by its reply: none is cut
        assert len(seen) % 2 == 0 and all(r.startswith(("Refined", "Draft")) for r in seen[1::2])
        expected = []
        for r in range(3):
            completed = done[u, r]
            in_flight = f"{u} round {r} turn {len(completed)}"
            expected += completed
            if said[len(expected) : len(expected) + 1] == [in_flight]:
                expected.append(in_flight)  # saved, though its reply never reached the client
        assert said == expected
    if "REDRAFT_DATABASE_URL" not in storage:
        assert set(integrity(Path(storage["REDRAFT_HOME"])).values()) == {"ok"}


def _attempt(url: str, user_id: str, text: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        turn(url, user_id, "t", text, timeout=60)


def _talk(url: str, user_id: str, round_: int, done: dict, stop: threading.Event) -> None:
    """Send turns back to back until the server dies; record the ones that completed."""
    while not stop.is_set():
        text = f"{user_id} round {round_} turn {len(done[user_id, round_])}"
        try:
            turn(url, user_id, "t", text, timeout=30)
        except (httpx.HTTPError, AssertionError):
            return
        done[user_id, round_].append(text)


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.05)
