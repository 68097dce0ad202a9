"""Tenant isolation under load, through `redraft serve`: no request to the provider ever carries
another user's persona, thread, knowledge or learned facts.

Many users, each with an API key bound to them, talk at once; they all use the same thread id,
and each one's memory learns facts from their turns. Every piece of a user's text carries that
user's token, so the whole request log can be checked: each call to the provider holds the
tokens of one user at most.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from redraft.testing import FakeProvider
from tests.conftest import plan, revise, user
from tests.servers import redraft_serve, server_env

USERS = 12
TURNS = 4
TOKEN = re.compile(r"\bU(\d+)-")


def learned(call) -> dict:
    """The memory agent learns a fact from each exchange, in the words (token) of its user."""
    tokens = sorted(set(TOKEN.findall(str(call.messages[1]["content"]))))
    return {"facts": [{"action": "add", "text": f"U{t}-fact learned from a turn"} for t in tokens]}


async def conversation(client: httpx.AsyncClient, n: int) -> list[str]:
    replies = []
    for turn in range(TURNS):
        body = {
            "model": "redraft",
            "messages": [user(f"U{n}-message {turn}: what should I do?")],
            "thread_id": "shared",  # every user's thread has the same name
            "persona": [f"U{n}-persona prefers short answers"],
            "knowledge": [f"U{n}-passage with facts for this user"],
        }
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer key-{n}"}
        )
        assert response.status_code == 200, response.text
        replies.append(response.json()["choices"][0]["message"]["content"])
    return replies


async def test_no_call_carries_another_users_data(tmp_path):
    async with FakeProvider(latency_s=0.05) as upstream:
        upstream.set_default("planner", plan("factuality", "personalization", "coherence"))
        upstream.set_default("coherence", revise("Scripted", "Refined"))
        upstream.set_default("memory", learned)
        env = server_env(
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="upstream",
            REDRAFT_API_KEYS=",".join(f"key-{n}:user-{n}" for n in range(USERS)),
            REDRAFT_HOME=str(tmp_path / "home"),
            REDRAFT_PLANNER="llm",
            REDRAFT_CRITICS="factuality,personalization,coherence",
            REDRAFT_MAX_RETRIES="0",
        )
        with redraft_serve(env, tmp_path / "serve.log") as url:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                await asyncio.gather(*(conversation(client, n) for n in range(USERS)))
                # learning is in the background: a last turn each, once it is done
                await asyncio.sleep(1)
                await asyncio.gather(*(conversation(client, n) for n in range(USERS)))
        calls = list(upstream.calls)
    assert upstream.max_in_flight() > USERS // 2  # the users' turns really overlapped
    for call in calls:
        owners = set(TOKEN.findall(str(call.messages)))
        assert len(owners) <= 1, (call.agent, owners)
    by_user = {n: [c for c in calls if f"U{n}-" in str(c.messages)] for n in range(USERS)}
    for n, own in by_user.items():
        text = str([c.messages for c in own])
        # each user's thread, persona, knowledge and learned facts reached their own calls
        assert f"U{n}-message {TURNS - 1}" in text and f"U{n}-persona" in text
        assert f"U{n}-passage" in text and f"U{n}-fact learned" in text
        # a thread holds its own user's turns: the last responder call saw all of them
        last = [c for c in own if c.agent == "responder"][-1]
        turns = [m["content"] for m in last.messages if m["role"] == "user"]
        assert sum(f"U{n}-message" in t for t in turns) == 2 * TURNS
