"""Scale-out: two `redraft serve` processes on one PostgreSQL share threads and personas.

Needs PostgreSQL (the `database_url` fixture): CI always sets it, and an unreachable server
fails this test rather than skipping it.
"""

from __future__ import annotations

import contextlib
import uuid

import openai
import psycopg
import pytest

from redraft.testing import FakeProvider
from tests.conftest import user
from tests.servers import redraft_serve
from tests.test_server import serve_env, wait_for


@pytest.fixture
def replicas(provider: FakeProvider, database_url: str, tmp_path):
    """Two server processes sharing the database (and nothing else: separate homes)."""
    with psycopg.connect(database_url, connect_timeout=5):
        pass  # unreachable → fail here, clearly
    with contextlib.ExitStack() as stack:
        urls = [
            stack.enter_context(
                redraft_serve(
                    serve_env(
                        provider,
                        tmp_path / f"home-{name}",
                        REDRAFT_DATABASE_URL=database_url,
                        REDRAFT_STRATEGY="none",
                    ),
                    tmp_path / f"serve-{name}.log",
                )
            )
            for name in ("a", "b")
        ]
        yield [openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) for url in urls]


def test_turns_of_one_conversation_on_different_replicas(replicas, provider):
    a, b = replicas
    thread = {"thread_id": f"scale-{uuid.uuid4()}"}
    provider.script("responder", "Answer from A.", "Answer from B.", "A again.")
    a.chat.completions.create(
        model="m", messages=[user("first, on A")], user="u1", extra_body=thread
    )
    second = b.chat.completions.create(
        model="m", messages=[user("second, on B")], user="u1", extra_body=thread
    )
    a.chat.completions.create(
        model="m", messages=[user("third, on A")], user="u1", extra_body=thread
    )
    assert second.choices[0].message.content == "Answer from B."
    drafts = provider.calls_for("responder")
    seen_by_b = [m["content"] for m in drafts[1].messages[1:]]
    assert seen_by_b == ["first, on A", "Answer from A.", "second, on B"]
    seen_by_a = [m["content"] for m in drafts[2].messages[1:]]
    assert seen_by_a == [*seen_by_b, "Answer from B.", "third, on A"]
    # and it is one user's thread: another user with the same thread id starts afresh
    b.chat.completions.create(model="m", messages=[user("hi")], user="u2", extra_body=thread)
    assert [m["content"] for m in provider.calls_for("responder")[3].messages[1:]] == ["hi"]


def test_a_persona_learned_on_one_replica_is_known_on_the_other(replicas, provider):
    a, b = replicas
    user_id = f"beekeeper-{uuid.uuid4()}"
    learned = {"action": "add", "text": "The user keeps bees on the roof.", "source": "stated"}

    def memory(call):  # learns only from this user's exchange
        return {"facts": [learned], "style": None} if "bees" in str(call.messages) else None

    provider.set_default("memory", memory)
    a.chat.completions.create(model="m", messages=[user("I keep bees, by the way.")], user=user_id)

    def b_recalls() -> bool:  # stored in the background, after A's reply
        b.chat.completions.create(model="m", messages=[user("Any tips for me?")], user=user_id)
        return "keeps bees" in str(provider.calls_for("responder")[-1].messages)

    wait_for(b_recalls, timeout_s=30)
