"""Concurrency limit (429 + Retry-After) and per-request timeout (504) of `redraft serve`."""

from __future__ import annotations

import threading

import openai
import pytest

from redraft.testing import FakeProvider
from tests.conftest import plan, revise, user
from tests.servers import redraft_serve
from tests.test_server import metric, serve_env, wait_for

TIMEOUT_S = 5


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-limits")
    env = serve_env(
        upstream,
        tmp / "home",
        REDRAFT_MAX_CONCURRENCY="1",
        REDRAFT_REQUEST_TIMEOUT_S=str(TIMEOUT_S),
        REDRAFT_STRATEGY="none",
    )
    with redraft_serve(env, tmp / "serve.log") as url:
        # The first turn of a process also loads the provider client: not what is measured here.
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused").chat.completions.create(
            model="m", messages=[user("warm up")]
        )
        yield url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.reset()
    upstream.latency_s = 0.0
    upstream.tokens_per_s = None


def test_a_turn_past_the_limit_is_a_429_with_retry_after(client, upstream, server):
    upstream.latency_s = 1.0
    replies: list[str] = []
    first = threading.Thread(
        target=lambda: replies.append(
            client.chat.completions.create(model="m", messages=[user("first")])
            .choices[0]
            .message.content
        )
    )
    first.start()
    wait_for(lambda: len(upstream.calls) == 1)  # the first turn holds the only slot
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=[user("second")])
    assert info.value.response.headers["retry-after"] == "1"
    first.join(30)
    assert replies == ["Scripted reply to: first"]
    assert [c.agent for c in upstream.calls] == ["responder"]  # the second never ran
    assert metric(server, "redraft_http_errors_total", status="429") >= 1
    # the slot is free again
    assert client.chat.completions.create(model="m", messages=[user("third")]).choices


def test_a_turn_past_the_timeout_is_a_504(client, upstream, server):
    upstream.latency_s = TIMEOUT_S + 3
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=[user("slow")])
    assert info.value.status_code == 504
    assert f"no reply within {TIMEOUT_S} s" in info.value.message
    assert metric(server, "redraft_turns_total", outcome="timeout", strategy="none") == 1
    wait_for(lambda: metric(server, "redraft_turns_in_flight") == 0)


def test_the_sdk_retry_honours_retry_after(server, upstream):
    upstream.latency_s = 1.0
    patient = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=3)
    replies: list[str] = []

    def ask(text: str) -> None:
        completion = patient.chat.completions.create(model="m", messages=[user(text)])
        replies.append(completion.choices[0].message.content)

    threads = [threading.Thread(target=ask, args=(f"q{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(replies) == ["Scripted reply to: q0", "Scripted reply to: q1"]


def test_a_timeout_mid_stream_ends_the_stream_with_an_error(client, upstream):
    upstream.script("planner", plan("coherence"))
    upstream.script("coherence", revise("Scripted", "Refined"))
    upstream.script("editor", {"changes": [], "reply": " ".join(["word"] * 400)})
    upstream.tokens_per_s = 40  # ten seconds of editing, past the timeout
    stream = client.chat.completions.create(
        model="m", messages=[user("hi")], stream=True, extra_body={"strategy": "parallel"}
    )
    received = []
    with pytest.raises(openai.APIError, match=f"no reply within {TIMEOUT_S} s"):
        for chunk in stream:
            received.append(chunk)
    assert any(c.choices and c.choices[0].delta.content for c in received)
