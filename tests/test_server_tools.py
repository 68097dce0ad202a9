"""Tool-using agents through `redraft serve`, driven by the official openai SDK over real sockets;
the upstream is a FakeProvider (openai SDK → redraft serve → ChatOpenAI → FakeProvider). Also the
rest of the request surface: content parts, fields redraft cannot honour, the published schema."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from redraft.testing import FakeProvider, ToolCall
from tests.conftest import PASS, plan, revise, user
from tests.servers import redraft_serve, server_env
from tests.test_server import serve_env

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Today's weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = user("What's the weather in Paris today?")
RESULT = "Paris: 18 C, light rain."


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.reset()


@pytest.fixture(scope="module")
def served(upstream, tmp_path_factory):
    """The server's URL and its log file (stderr)."""
    tmp = tmp_path_factory.mktemp("serve-tools")
    env = serve_env(upstream, tmp / "home", REDRAFT_MEMORY="false")
    with redraft_serve(env, tmp / "serve.log") as url:
        yield url, tmp / "serve.log"


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def call_weather(client: openai.OpenAI, upstream: FakeProvider, stream: bool, **extra):
    """One request offering the tool; returns (tool calls as dicts, finish reason, redraft)."""
    upstream.script("responder", ToolCall("get_weather", {"city": "Paris"}, id="call_1"))
    request = {"model": "gpt-4o-mini", "messages": [ASK], "tools": [WEATHER], **extra}
    if not stream:
        completion = client.chat.completions.create(**request)
        choice = completion.choices[0]
        assert choice.message.content is None
        calls = [c.model_dump() for c in choice.message.tool_calls]
        return calls, choice.finish_reason, completion.model_extra["redraft"]
    chunks = list(client.chat.completions.create(stream=True, **request))
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"function": {"arguments": ""}})
            call["id"] = delta.id or call.get("id")
            call["type"] = delta.type or call.get("type")
            call["function"]["name"] = delta.function.name or call["function"].get("name")
            call["function"]["arguments"] += delta.function.arguments or ""
    (last,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ""
    return (
        [calls[i] for i in sorted(calls)],
        last.choices[0].finish_reason,
        last.model_extra["redraft"],
    )


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_comes_back_untouched(client, upstream, stream):
    calls, finish, details = call_weather(client, upstream, stream, tool_choice="auto")
    assert finish == "tool_calls"
    assert calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
        }
    ]
    assert [c.agent for c in upstream.calls] == ["responder"]  # no critic, no extra call
    assert upstream.calls[0].tools == [WEATHER] and upstream.calls[0].tool_choice == "auto"
    assert details["tool_calls"] == calls and details["critiques"] == []


@pytest.mark.parametrize("stream", [False, True])
def test_the_turn_after_the_tool_result_is_refined(client, upstream, stream):
    calls, _, _ = call_weather(client, upstream, False)
    upstream.reset()
    upstream.script("responder", "It is sunny in Paris.")
    upstream.script("planner", plan("factuality"))
    claim = {"text": "sunny", "label": "contradicted", "passages": ["p1"]}
    upstream.script(
        "factuality", {**revise("sunny", "light rain", evidence=["p1"]), "claims": [claim]}
    )
    upstream.script(
        "editor",
        {
            "changes": [{"aspect": "factuality", "change": "weather"}],
            "reply": "It is 18 C with light rain in Paris.",
        },
    )
    messages = [
        ASK,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
    ]
    request = {"model": "m", "messages": messages, "tools": [WEATHER]}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **request))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        (last,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        finish, details = last.choices[0].finish_reason, last.model_extra["redraft"]
    else:
        completion = client.chat.completions.create(**request)
        text, finish = completion.choices[0].message.content, completion.choices[0].finish_reason
        details = completion.model_extra["redraft"]
    assert text == "It is 18 C with light rain in Paris."
    assert finish == "stop" and details["changed"] is True and details["tool_calls"] is None
    assert [(p["id"], p["source"]) for p in details["citations"]] == [("p1", "get_weather")]
    sent = upstream.calls_for("responder")[0].messages
    assert sent[-1] == {"role": "tool", "content": RESULT, "tool_call_id": "call_1"}


def test_a_threaded_tool_conversation_is_stored_once(client, upstream):
    thread = {"thread_id": "tools-thread"}
    calls, _, _ = call_weather(client, upstream, False, extra_body=thread, user="tool-user")
    upstream.reset()
    upstream.script("responder", "Light rain, 18 C.")
    upstream.set_default("planner", {"steps": []})
    messages = [
        ASK,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
    ]
    completion = client.chat.completions.create(
        model="m", messages=messages, extra_body=thread, user="tool-user"
    )
    assert completion.choices[0].message.content == "Light rain, 18 C."
    roles = [m["role"] for m in upstream.calls_for("responder")[0].messages[1:]]
    assert roles == ["user", "assistant", "tool"]


def test_a_handed_in_tool_call_draft_is_returned_untouched(client, upstream):
    call = {"id": "c9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":1}'}}
    completion = client.chat.completions.create(
        model="m",
        messages=[ASK],
        extra_body={"draft": {"content": None, "tool_calls": [call]}},
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls[0].model_dump() == call
    assert upstream.calls == []


def test_image_parts_reach_the_responder_as_they_came_and_critics_see_a_placeholder(
    client, upstream
):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    upstream.script("planner", plan("coherence"))
    upstream.script("coherence", PASS)
    content = [{"type": "text", "text": "What is in this picture?"}, image]
    completion = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )
    assert completion.choices[0].finish_reason == "stop"
    assert upstream.calls_for("responder")[0].messages[-1]["content"] == content
    critic = str(upstream.calls_for("coherence")[0].messages[1]["content"])
    assert "[image_url not shown]" in critic and "base64" not in critic


def test_the_published_schema_lists_the_completions_route(server):
    document = httpx.get(f"{server}/openapi.json").json()
    route = document["paths"]["/v1/chat/completions"]["post"]
    body = route["requestBody"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    request = schemas[body["$ref"].split("/")[-1]]
    assert {"messages", "tools", "tool_choice", "thread_id", "strategy"} <= set(
        request["properties"]
    )
    response = route["responses"]["200"]["content"]["application/json"]["schema"]
    assert "redraft" in schemas[response["$ref"].split("/")[-1]]["properties"]
    assert httpx.get(f"{server}/docs").status_code == 200


# ── server ergonomics ─────────────────────────────────────────────────────────────────────


def access_lines(log) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


def test_one_access_log_line_per_request_without_user_text(served, upstream):
    url, log = served
    secret = "my private question about the weather in Paris"
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "m", "messages": [user(secret)]},
        headers={"X-Request-ID": "req-42"},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "req-42"
    refused = httpx.post(f"{url}/v1/chat/completions", json={"model": "m"}, timeout=30)
    assert refused.status_code == 400
    generated = refused.headers["x-request-id"]
    deadline = time.monotonic() + 10  # the line is written as the response ends
    while generated not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = access_lines(log)
    (ok,) = [line for line in lines if line["request_id"] == "req-42"]
    assert (ok["method"], ok["path"], ok["status"]) == ("POST", "/v1/chat/completions", 200)
    assert ok["ms"] > 0
    (bad,) = [line for line in lines if line["request_id"] == generated]
    assert bad["status"] == 400
    assert secret not in log.read_text()  # no user text at the default log level
    assert "uvicorn.access" not in log.read_text() and '" 200' not in log.read_text()


def test_version():
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"redraft {importlib.metadata.version('redraft')}"


def test_serve_without_a_provider_refuses_to_start_saying_what_to_set(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "serve", "--port", "0"],
        env=server_env(REDRAFT_HOME=str(tmp_path), OPENAI_API_KEY=""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "OPENAI_API_KEY" in line and "OPENAI_BASE_URL" in line
    assert "serving" not in done.stdout


@pytest.mark.parametrize("stream", [False, True])
def test_a_json_reply_is_not_broken_by_refinement(client, upstream, stream):
    draft = json.dumps({"city": "Paris", "population": 5000000})
    upstream.script("responder", draft)
    upstream.script("planner", plan("factuality"))
    upstream.script("factuality", revise("5000000", "2100000"))
    upstream.script("editor", {"changes": [], "reply": "About 2.1 million."})
    request = {"model": "m", "messages": [ASK], "response_format": {"type": "json_object"}}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **request))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        (details,) = [c.model_extra["redraft"] for c in chunks if "redraft" in c.model_extra]
    else:
        completion = client.chat.completions.create(**request)
        text, details = completion.choices[0].message.content, completion.model_extra["redraft"]
    assert text == draft
    assert [d["step"] for d in details["degraded"]] == ["response_format"]
    assert upstream.calls_for("responder")[0].response_format == {"type": "json_object"}
