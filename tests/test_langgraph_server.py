"""The graph on LangGraph Server: `langgraph dev` serving langgraph.json, driven by langgraph-sdk.

The server runs offline as a subprocess on 127.0.0.1 with LangGraph's own threads; the graph's
models point at a FakeProvider through OPENAI_BASE_URL in the server's environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from langgraph_sdk import get_client

from redraft.testing import FakeProvider
from tests.conftest import PASS, plan, revise, user
from tests.servers import REPO, langgraph_dev, server_env
from tests.test_server import QUERY, SAFETY_ASKS, SAFETY_PASSES, serve_env


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.reset()


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("langgraph")
    env = serve_env(upstream, tmp / "home")
    with langgraph_dev(env, tmp / "langgraph.log", workdir=tmp) as url:
        yield url


@pytest.fixture
def client(server):
    return get_client(url=server)


def turn(text: str, **fields) -> dict:
    return {"request": {"messages": [user(text)], **fields}}


async def test_the_graph_is_served_with_its_context_schema(client):
    (assistant,) = await client.assistants.search(graph_id="redraft")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    context = schemas["context_schema"]["properties"]
    assert {"strategy", "planner", "critics", "max_rounds"} <= set(context)
    assert "request" in schemas["input_schema"]["properties"]


async def test_a_thread_with_two_turns(client, upstream):
    upstream.script("responder", "The tower opened in 1899.", "It is 330 metres tall.")
    upstream.script("planner", plan("factuality"), {"steps": []})
    upstream.script("factuality", revise("1899", "1889"))
    upstream.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "year"}], "reply": "In 1889."}
    )
    thread = await client.threads.create()
    first = await client.runs.wait(
        thread["thread_id"], "redraft", input=turn("When did it open?", knowledge=["1889"])
    )
    assert first["reply"] == "In 1889."
    assert first["critiques"][0]["verdict"] == "revise"
    second = await client.runs.wait(thread["thread_id"], "redraft", input=turn("How tall?"))
    assert second["reply"] == "It is 330 metres tall."
    assert second["critiques"] == []  # per-turn lists start afresh
    seen = [m["content"] for m in upstream.calls_for("responder")[1].messages[1:]]
    assert seen == ["When did it open?", "In 1889.", "How tall?"]
    state = await client.threads.get_state(thread["thread_id"])
    assert len(state["values"]["history"]) == 4


async def test_context_sets_the_strategy_per_run(client, upstream):
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"], "redraft", input=turn("hello"), context={"strategy": "none"}
    )
    assert [c.agent for c in upstream.calls] == ["responder"]
    assert result["reply"] == result["draft"]


async def test_custom_stream_spells_the_reply(client, upstream):
    upstream.script("planner", plan("coherence"))
    upstream.script("coherence", revise("Scripted", "Refined"))
    reply = "Refined reply, streamed by the editor word by word."
    upstream.script("editor", {"changes": [], "reply": reply})
    thread = await client.threads.create()
    tokens = [
        part.data["token"]
        async for part in client.runs.stream(
            thread["thread_id"], "redraft", input=turn("hi"), stream_mode="custom"
        )
        if part.event == "custom" and "token" in part.data
    ]
    assert len(tokens) > 1 and "".join(tokens) == reply


async def test_safety_question_interrupts_and_the_answer_resumes(client, upstream):
    upstream.script("responder", "Here is a generic plan.", "Here is a plan for someone anxious.")
    upstream.script("planner", plan("safety"), plan("safety"))
    upstream.script("safety", SAFETY_ASKS, SAFETY_PASSES)
    upstream.script("safety_answer", {"answered": True, "value": "very anxious"})
    thread = await client.threads.create()
    paused = await client.runs.wait(thread["thread_id"], "redraft", input=turn(QUERY))
    (pending,) = paused["__interrupt__"]
    assert pending["value"]["question"] == "How are you feeling right now?"
    assert upstream.calls_for("editor") == []
    # the reply is the question, as in the Python API; the draft is held back
    assert paused["reply"] == "How are you feeling right now?"
    assert paused["draft"] == "Here is a generic plan."
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"]  # the turn is paused, not finished
    assert state["values"]["reply"] == "How are you feeling right now?"
    done = await client.runs.wait(
        thread["thread_id"], "redraft", command={"resume": "Honestly, very anxious."}
    )
    assert done["reply"] == "Here is a plan for someone anxious."
    assert [a["attribute"] for a in done["asked"]] == ["Emotional State"]
    assert "Emotional State: very anxious" in str(upstream.calls_for("responder")[1].messages)


async def test_critics_pass_means_the_draft_is_the_reply(client, upstream):
    upstream.script("planner", plan("factuality"))
    upstream.script("factuality", PASS)
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "redraft", input=turn("hi"))
    assert result["reply"] == result["draft"]
    assert upstream.calls_for("editor") == []


def test_the_deployment_image_serves_the_same_graph(tmp_path):
    """`langgraph dockerfile` (what `langgraph build` builds) accepts langgraph.json offline."""
    done = subprocess.run(
        [sys.executable, "-m", "langgraph_cli", "dockerfile", "-c", str(REPO / "langgraph.json"),
         str(tmp_path / "Dockerfile")],
        env=server_env(LANGGRAPH_CLI_NO_ANALYTICS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dockerfile = (tmp_path / "Dockerfile").read_text()
    graphs = re.search(r"LANGSERVE_GRAPHS='(.*)'", dockerfile).group(1)
    assert json.loads(graphs)["redraft"].endswith("/redraft/graphs/served.py:graph")
