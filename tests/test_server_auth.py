"""API keys of `redraft serve` (REDRAFT_API_KEYS), through the openai SDK over real sockets."""

from __future__ import annotations

import httpx
import openai
import pytest

from redraft.testing import FakeProvider
from tests.conftest import user
from tests.servers import redraft_serve
from tests.test_server import serve_env, wait_for

# unbound; bound to alice; bound to bob; bound to "a" and to "a:b" (ids that could collide)
KEYS = "k-open,k-alice:alice,k-bob:bob,k-a:a,k-ab:a:b"


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        fake.set_default("planner", {"steps": []})
        yield fake


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-auth")
    env = serve_env(upstream, tmp / "home", REDRAFT_API_KEYS=KEYS, REDRAFT_STRATEGY="none")
    with redraft_serve(env, tmp / "serve.log") as url:
        yield url


def client(server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)


def ask(server: str, key: str, text: str, **extra) -> openai.types.chat.ChatCompletion:
    return client(server, key).chat.completions.create(model="m", messages=[user(text)], **extra)


def prompt_of_last_draft(upstream: FakeProvider) -> str:
    return str(upstream.calls_for("responder")[-1].messages)


@pytest.mark.parametrize("key", ["wrong-key", "k-ope", "K-OPEN", "k-open-"])
def test_a_wrong_key_is_a_401(server, key):
    with pytest.raises(openai.AuthenticationError) as info:
        ask(server, key, "hi")
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


def test_a_missing_key_is_a_401(server):
    response = httpx.post(
        f"{server}/v1/chat/completions", json={"model": "m", "messages": [user("hi")]}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_models_need_a_key_health_and_metrics_do_not(server):
    with pytest.raises(openai.AuthenticationError):
        client(server, "nope").models.list()
    assert "redraft" in [m.id for m in client(server, "k-open").models.list()]
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/metrics").status_code == 200


def test_a_valid_key_gets_a_reply(server):
    assert ask(server, "k-open", "hello").choices[0].message.content == "Scripted reply to: hello"


def test_a_bound_key_cannot_act_for_another_user(server, upstream):
    drafts = len(upstream.calls_for("responder"))
    with pytest.raises(openai.PermissionDeniedError) as info:
        ask(server, "k-alice", "hi", user="bob")
    assert info.value.param == "user"
    assert len(upstream.calls_for("responder")) == drafts  # no turn ran


def test_bound_tenants_do_not_share_threads(server, upstream):
    thread = {"extra_body": {"thread_id": "shared-name"}}
    ask(server, "k-alice", "alice's secret plan", **thread)
    ask(server, "k-bob", "bob here", **thread)
    assert "alice's secret plan" not in prompt_of_last_draft(upstream)
    # the bound key acts as its user, named or not
    ask(server, "k-alice", "alice again", user="alice", **thread)
    assert "alice's secret plan" in prompt_of_last_draft(upstream)


def test_user_ids_with_separators_cannot_reach_other_threads(server, upstream):
    # user "a" with thread "b:c" and user "a:b" with thread "c" are different threads
    ask(server, "k-ab", "a:b's private note", extra_body={"thread_id": "c"})
    ask(server, "k-a", "who wrote before?", extra_body={"thread_id": "b:c"})
    assert "private note" not in prompt_of_last_draft(upstream)


def test_an_unbound_key_acts_for_the_user_it_names(server, upstream):
    thread = {"extra_body": {"thread_id": "named"}}
    ask(server, "k-bob", "bob's first words", **thread)
    ask(server, "k-open", "continuing", user="bob", **thread)
    assert "bob's first words" in prompt_of_last_draft(upstream)


def test_bound_tenants_do_not_share_personas(server, upstream):
    learned = {"action": "add", "text": "Alice keeps bees on her roof.", "source": "stated"}

    def memory(call):  # learns only from this exchange, not from other tests' late turns
        return {"facts": [learned], "style": None} if "bees" in str(call.messages) else None

    upstream.set_default("memory", memory)
    ask(server, "k-alice", "I keep bees on my roof, by the way.")

    def alice_recalls() -> bool:  # the fact is stored in the background, after the reply
        ask(server, "k-alice", "What should I plant for my hobby?")
        return "keeps bees" in prompt_of_last_draft(upstream)

    wait_for(alice_recalls, timeout_s=30)
    ask(server, "k-bob", "What should I plant for my hobby?")
    assert "bees" not in prompt_of_last_draft(upstream)
