"""`redraft serve` driven by the official openai SDK over real sockets on 127.0.0.1.

The server runs as a subprocess; its upstream is a FakeProvider, so both sides are real HTTP:
openai SDK → redraft serve → ChatOpenAI → FakeProvider.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from redraft.testing import FakeProvider
from tests.conftest import PASS, plan, revise, user
from tests.servers import redraft_serve, server_env

MAX_BODY = 100_000
KNOWLEDGE = ["The Eiffel Tower was completed in 1889 and is 330 metres tall."]
QUESTION = [user("When was the Eiffel Tower finished?")]
REFINED = "The Eiffel Tower was finished in 1889, after two years of construction work."
QUERY = "I lost my job today and I don't know how I'll pay rent. What should I do?"
SAFETY = {"issues": [], "confidence": 0.9, "evidence": [], "domain": "Career"}
SAFETY_ASKS = {
    **SAFETY,
    "verdict": "ask",
    "risk": "high",
    "completeness": 1,
    "ask_attribute": "Emotional State",
    "question": "How are you feeling right now?",
}
SAFETY_PASSES = {**SAFETY, "verdict": "pass", "risk": "medium", "completeness": 4}


def serve_env(upstream: FakeProvider, home, **values: str) -> dict[str, str]:
    return server_env(
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_API_KEY="upstream-key",
        REDRAFT_HOME=str(home),
        REDRAFT_PLANNER="llm",
        REDRAFT_MAX_RETRIES="0",
        **values,
    )


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.reset()
    upstream.latency_s = 0.0
    upstream.tokens_per_s = None


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    # No background persona learning: its calls would reach the upstream after a test ends,
    # and these tests count the upstream's calls.
    env = serve_env(
        upstream, tmp / "home", REDRAFT_MAX_BODY_BYTES=str(MAX_BODY), REDRAFT_MEMORY="false"
    )
    with redraft_serve(env, tmp / "serve.log") as url:
        yield url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(server):
    return openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def script_factual_fix(upstream: FakeProvider, reply: str = REFINED) -> None:
    upstream.script("responder", "The Eiffel Tower was finished in 1899.")
    upstream.script("planner", plan("factuality"))
    upstream.script("factuality", revise("in 1899", "in 1889", evidence=["p1"]))
    upstream.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "1899 → 1889"}], "reply": reply}
    )


def metric(server: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{server}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# ── completions ──────────────────────────────────────────────────────────────────────


def test_completion_is_the_refined_reply_with_its_explanation(client, upstream):
    script_factual_fix(upstream)
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, extra_body={"knowledge": KNOWLEDGE}
    )
    assert completion.choices[0].message.content == REFINED
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"
    details = completion.model_extra["redraft"]
    assert details["draft"] == "The Eiffel Tower was finished in 1899."
    assert details["changed"] is True
    assert details["plan"]["aspects"] == ["factuality"]
    assert details["critiques"][0]["verdict"] == "revise"
    assert details["degraded"] is None
    assert details["timings"]["total"] > 0
    # the usage block counts every LLM call of the turn
    calls = upstream.calls
    assert details["usage"]["llm_calls"] == len(calls) == 4
    assert completion.usage.prompt_tokens == sum(c.usage["prompt_tokens"] for c in calls)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    # the knowledge sent as an extra body field reached the factuality critic
    assert KNOWLEDGE[0] in str(upstream.calls_for("factuality")[0].messages)


async def test_async_client(aclient, upstream):
    upstream.script("planner", plan("personalization"))
    upstream.script("personalization", PASS)
    completion = await aclient.chat.completions.create(
        model="redraft",
        messages=QUESTION,
        user="u-async",
        extra_body={"persona": ["prefers metric units"]},
    )
    assert completion.choices[0].message.content == completion.model_extra["redraft"]["draft"]
    assert "prefers metric units" in str(upstream.calls_for("personalization")[0].messages)


def test_streaming_sends_the_reply_as_it_is_written(client, upstream):
    script_factual_fix(upstream)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta]
    text = "".join(part or "" for part in content)
    assert text == REFINED
    assert sum(1 for part in content if part) > 1  # the editor's words, as they came
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finish) == 1
    assert finish[0].model_extra["redraft"]["reply"] == REFINED
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_async_streaming(aclient, upstream):
    upstream.script("responder", "Hello there, friend.")
    upstream.script("planner", {"steps": []})
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=[user("hi")], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello there, friend."


def test_thread_keeps_the_conversation(client, upstream):
    upstream.script("responder", "First answer.", "Second answer.")
    upstream.set_default("planner", {"steps": []})
    thread = {"thread_id": "server-thread"}
    client.chat.completions.create(model="m", messages=[user("hello")], extra_body=thread)
    second = client.chat.completions.create(
        model="m", messages=[user("and then?")], extra_body=thread
    )
    assert second.choices[0].message.content == "Second answer."
    assert second.model_extra["redraft"]["thread_id"] == "server-thread"
    contents = [m["content"] for m in upstream.calls_for("responder")[1].messages[1:]]
    assert contents == ["hello", "First answer.", "and then?"]


def test_strategy_per_request(client, upstream):
    completion = client.chat.completions.create(
        model="m", messages=QUESTION, extra_body={"strategy": "none"}
    )
    assert [c.agent for c in upstream.calls] == ["responder"]
    assert completion.model_extra["redraft"]["strategy"] == "none"


def test_a_provided_draft_is_refined_not_drafted(client, upstream):
    upstream.script("planner", plan("factuality"))
    upstream.script("factuality", PASS)
    completion = client.chat.completions.create(
        model="m", messages=QUESTION, extra_body={"draft": "It was finished in 1889."}
    )
    assert upstream.calls_for("responder") == []
    assert completion.choices[0].message.content == "It was finished in 1889."


def test_models_lists_redraft(client):
    assert "redraft" in [model.id for model in client.models.list()]


def test_metrics_count_turns_calls_and_latency(client, upstream, server):
    before = metric(server, "redraft_turns_total", outcome="ok", strategy="parallel")
    calls_before = metric(server, "redraft_llm_calls_total", agent="editor")
    script_factual_fix(upstream)
    client.chat.completions.create(model="m", messages=QUESTION)
    assert metric(server, "redraft_turns_total", outcome="ok", strategy="parallel") == before + 1
    assert metric(server, "redraft_llm_calls_total", agent="editor") == calls_before + 1
    assert metric(server, "redraft_turn_seconds_count", strategy="parallel") >= 1
    assert metric(server, "redraft_node_seconds_count", node="factuality") >= 1
    assert metric(server, "redraft_turns_in_flight") == 0


# ── upstream failures ────────────────────────────────────────────────────────────────


def test_upstream_down_with_a_draft_gives_the_degraded_reply(client, upstream, server):
    degraded_before = metric(server, "redraft_turns_total", outcome="degraded", strategy="parallel")
    upstream.error_rate = 1.0
    completion = client.chat.completions.create(
        model="m", messages=QUESTION, extra_body={"draft": "Handed-in reply."}
    )
    assert completion.choices[0].message.content == "Handed-in reply."
    degraded = completion.model_extra["redraft"]["degraded"]
    assert degraded[0]["step"] == "plan" and "500" in degraded[0]["reason"]
    after = metric(server, "redraft_turns_total", outcome="degraded", strategy="parallel")
    assert after == degraded_before + 1
    assert metric(server, "redraft_degradations_total", step="plan") >= 1


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_down_without_a_draft_is_a_502(client, upstream, stream):
    upstream.error_rate = 1.0
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=QUESTION, stream=stream)
    assert info.value.status_code == 502
    assert info.value.type == "server_error"
    assert "no reply could be made" in info.value.message


# ── bad input: OpenAI-style errors with the right 4xx, never a 500 ───────────────────


def raw_post(client: openai.OpenAI, content, content_type: str = "application/json"):
    return client.post(
        "/chat/completions",
        cast_to=object,
        content=content,
        options={"headers": {"Content-Type": content_type}},
    )


def test_malformed_json_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        raw_post(client, b'{"model": "m", "messages": [')
    assert "invalid JSON at line 1" in info.value.message
    assert info.value.type == "invalid_request_error"


def test_wrong_content_type_is_a_415(client):
    with pytest.raises(openai.APIStatusError) as info:
        raw_post(client, b"model=m&messages=hi", "application/x-www-form-urlencoded")
    assert info.value.status_code == 415
    assert info.value.body["param"] == "Content-Type"


def test_oversized_body_is_a_413(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=[user("x" * MAX_BODY)])
    assert info.value.status_code == 413
    assert info.value.code == "request_too_large"


def test_oversized_chunked_body_is_a_413(client):
    # No Content-Length: the size is counted as the body arrives.
    chunks = (b'{"model": "m", "messages": [' if i == 0 else b" " * 10_000 for i in range(20))
    with pytest.raises(openai.APIStatusError) as info:
        raw_post(client, chunks)
    assert info.value.status_code == 413


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            {"model": "m", "messages": [{"role": "wizard", "content": "hi"}]},
            "messages.0.role",
            "user",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages.0",
            "tool_call_id",
        ),
        ({"model": "m", "messages": []}, "messages", "at least 1"),
        ({"model": "m", "messages": [{"role": "assistant", "content": "x"}]}, None, "user message"),
        (
            {"model": "m", "messages": [{"role": "user", "content": 42}]},
            "messages.0.content",
            "string",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            "messages.0.content",
            "content part 0 must be an object with a `type`",
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "Field required"),
        ({"model": "m", "messages": [user("hi")], "thread": "t1"}, "thread", "unrecognized"),
        ({"model": "m", "messages": [user("hi")], "user_id": "bob"}, "user_id", "`user`"),
        ({"model": "m", "messages": [user("hi")], "strategy": "fast"}, "strategy", "parallel"),
        ({"model": "m", "messages": [user("hi")], "user": ""}, "user", "at least 1"),
        ({"model": "m", "messages": [user("hi")], "n": 2}, "n", "n must be 1"),
        (
            {"model": "m", "messages": [user("hi")], "tools": [{"type": "function"}]},
            "tools",
            "tool 0 must be",
        ),
        ({"model": "m", "messages": [user("hi")], "logprobs": True}, "logprobs", "logprobs"),
        ({"model": "m", "messages": [user("hi")], "top_logprobs": 3}, "top_logprobs", "logprobs"),
        ({"model": "m", "messages": [user("hi")], "audio": {"voice": "x"}}, "audio", "audio"),
        (
            {"model": "m", "messages": [user("hi")], "functions": [{"name": "f"}]},
            "functions",
            "tools",
        ),
        (
            {"model": "m", "messages": [user("hi")], "tool_choice": "sometimes"},
            "tool_choice",
            "none",
        ),
        ({"model": "m", "messages": [user("hi")], "draft": " "}, "draft", "empty"),
    ],
)
def test_invalid_requests_are_400s_naming_the_field(client, upstream, body, param, words):
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", cast_to=object, body=body)
    assert info.value.param == param
    assert words.lower() in info.value.message.lower()
    assert upstream.calls == []


def test_a_json_array_body_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="JSON object"):
        raw_post(client, b"[1, 2]")


DEEP = 40_000  # levels: the bodies below stay under MAX_BODY


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"a":' * (DEEP // 3) + b"1" + b"}" * (DEEP // 3),
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "persona": '
        + b"[" * DEEP
        + b"]" * DEEP
        + b"}",
    ],
    ids=["array", "object", "inside-a-request"],
)
def test_deeply_nested_json_is_a_400(client, upstream, server, body):
    assert len(body) < MAX_BODY
    with pytest.raises(openai.BadRequestError) as info:
        raw_post(client, body)
    assert info.value.body["message"] == "invalid JSON: the body is nested too deeply"
    assert info.value.type == "invalid_request_error"
    assert upstream.calls == []
    assert httpx.get(f"{server}/healthz").status_code == 200  # and the server carries on


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "yes"),
        ("stream", "true"),
        ("stream", 1),
        ("stream", 0),
        ("stream_options", {"include_usage": "yes"}),
    ],
)
def test_stream_flags_must_be_booleans(client, upstream, field, value):
    body = {"model": "m", "messages": [user("hi")], "stream": True, field: value}
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", cast_to=object, body=body)
    assert info.value.param == (field if field == "stream" else f"{field}.include_usage")
    assert "valid boolean" in info.value.message
    assert upstream.calls == []


def test_stream_null_is_not_streamed(client, upstream):
    """The openai SDK sends `"stream": null` for `stream=None`, as OpenAI's API allows."""
    upstream.script("planner", {"steps": []})
    completion = client.chat.completions.create(model="m", messages=QUESTION, stream=None)
    assert completion.choices[0].message.content


def test_sampling_options_are_accepted(client, upstream):
    upstream.script("planner", {"steps": []})
    completion = client.chat.completions.create(
        model="m", messages=QUESTION, temperature=0.9, max_tokens=50, seed=3, top_p=0.5
    )
    assert completion.choices[0].message.content


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/v2/x", 404), ("GET", "/v1/chat/completions", 405)]
)
def test_unknown_routes_answer_openai_style(server, method, path, status):
    response = httpx.request(method, f"{server}{path}")
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# ── streaming and slots ──────────────────────────────────────────────────────────────


def test_a_client_leaving_mid_stream_ends_its_turn(client, upstream, server):
    upstream.script("planner", plan("coherence"))
    upstream.script("coherence", revise("draft", "reply"))
    upstream.script("editor", {"changes": [], "reply": " ".join(["word"] * 200)})
    upstream.tokens_per_s = 20  # ten seconds of editing
    stream = client.chat.completions.create(model="m", messages=QUESTION, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 2:
            break
    stream.close()
    wait_for(lambda: metric(server, "redraft_turns_in_flight") == 0)
    editor = upstream.calls_for("editor")[0]
    wait_for(lambda: editor.ended is not None)
    assert editor.status == 499  # the upstream call was abandoned, not finished


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.05)


# ── the safety agent's question over HTTP ────────────────────────────────────────────


def reply_of(client: openai.OpenAI, stream: bool, **request) -> tuple[str, dict]:
    """The assistant's text and the `redraft` object, from a plain or a streamed completion."""
    if not stream:
        completion = client.chat.completions.create(model="m", **request)
        return completion.choices[0].message.content, completion.model_extra["redraft"]
    chunks = list(client.chat.completions.create(model="m", stream=True, **request))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (details,) = [c.model_extra["redraft"] for c in chunks if "redraft" in c.model_extra]
    return text, details


def script_safety_question(upstream: FakeProvider) -> None:
    upstream.script("responder", "Here is a generic plan.", "Here is a plan for someone anxious.")
    upstream.script("planner", plan("safety"), plan("safety"))
    upstream.script("safety", SAFETY_ASKS, SAFETY_PASSES)
    upstream.script("safety_answer", {"answered": True, "value": "very anxious"})


@pytest.mark.parametrize("stream", [False, True])
def test_safety_question_is_the_assistant_message_and_the_next_message_answers(
    client, upstream, stream
):
    script_safety_question(upstream)
    # a user of its own: the answer is remembered for the user, and not asked for again
    thread = {"user": f"u-safety-{stream}", "extra_body": {"thread_id": "safety"}}
    text, details = reply_of(client, stream, messages=[user(QUERY)], **thread)
    assert text == "How are you feeling right now?"
    assert details["question"]["attribute"] == "Emotional State"
    text, details = reply_of(client, stream, messages=[user("Honestly, very anxious.")], **thread)
    assert text == "Here is a plan for someone anxious."
    assert details["question"] is None
    assert [a["attribute"] for a in details["asked"]] == ["Emotional State"]


@pytest.mark.parametrize("stream", [False, True])
def test_without_a_thread_the_safety_question_is_the_reply(client, upstream, stream):
    script_safety_question(upstream)
    text, details = reply_of(client, stream, messages=[user(QUERY)], user=f"u-once-{stream}")
    assert text == "How are you feeling right now?"
    assert details["question"]["attribute"] == "Emotional State"


def test_concurrent_requests_share_one_server(client, upstream):
    upstream.latency_s = 1.0
    upstream.set_default("planner", {"steps": []})
    results: list[str] = []

    def ask_once(i: int) -> None:
        completion = client.chat.completions.create(model="m", messages=[user(f"question {i}")])
        results.append(completion.choices[0].message.content)

    threads = [threading.Thread(target=ask_once, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == sorted(f"Scripted reply to: question {i}" for i in range(4))
    assert upstream.max_in_flight(agents=["responder"]) == 4


# ── the command line ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"REDRAFT_MAX_CONCURRENCY": "many"}, "max_concurrency"),
        ({"REDRAFT_API_KEYS": "sk-secret-1,:alice"}, "an API key must not be empty"),
        ({"REDRAFT_API_KEYS": "sk-secret-1,sk-secret-1"}, "listed twice"),
    ],
)
def test_serve_with_bad_settings_is_one_line_and_exit_2(env, words):
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "serve", "--port", "0"],
        env=server_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr
    assert "sk-secret-1" not in done.stderr  # keys never reach the logs


def test_serve_on_a_taken_port_is_one_line_and_exit_1(server):
    port = server.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "serve", "--port", port],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"redraft: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
