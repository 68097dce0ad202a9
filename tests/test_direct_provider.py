"""The direct provider path (`redraft.llm.direct`) against the LangChain path it replaces for
models built by name: the same request bodies, usage, retries, streaming and run observers.

`path` runs a test on both: "direct" (the default for a model redraft builds) and "langchain"
(the model left unregistered, so calls go through ChatOpenAI as a user's own model does)."""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph

from redraft import Refiner, ReplyToken
from redraft.llm import direct
from redraft.llm.calls import (
    UsageTracker,
    call_message,
    call_structured,
    make_chat_model,
    stream_structured,
)
from redraft.state import CriticOutput, EditorOutput
from redraft.testing import Fail
from tests.conftest import PASS, plan, revise, user

PATHS = ("direct", "langchain")
CRITIC = [SystemMessage("[agent: coherence]\nCheck the reply."), HumanMessage("Is it right?")]
EDITOR = [SystemMessage("[agent: editor]\nRewrite the reply."), HumanMessage("Paris is nice.")]
EDITED = {"changes": [], "reply": "Paris, the capital of France, is lovely in the spring."}


def built(config, path: str, monkeypatch) -> Any:
    """The chat model redraft builds for `config`, called the given way."""
    with monkeypatch.context() as patch:
        if path == "langchain":
            patch.setattr(direct, "register", lambda model, target: None)
        return make_chat_model(config.model, config)


def turn_request(**extra) -> dict:
    return {"messages": [user("Tell me about Paris.")], "draft": "Paris is nice.", **extra}


def script_turn(provider) -> None:
    provider.set_default("planner", plan("factuality", "coherence"))
    provider.set_default("factuality", PASS)
    provider.set_default("coherence", revise("nice", "lovely"))
    provider.set_default("editor", EDITED)


def test_a_model_built_by_name_goes_direct_and_a_given_one_keeps_langchain(http_config):
    config = http_config()
    model = make_chat_model(config.model, config)
    assert isinstance(model, ChatOpenAI)  # still a chat model for tools and user code
    target = direct.target_of(model)
    assert target is not None and target.base_url == config.base_url
    assert (target.model, target.temperature, target.timeout_s) == (
        config.model,
        config.temperature,
        config.timeout_s,
    )
    given = ChatOpenAI(model="gpt-4o-mini", base_url=config.base_url, api_key="k")
    assert direct.target_of(given) is None


async def test_a_direct_turn_never_enters_langchains_chat_model(provider, http_config, monkeypatch):
    async def refuse(*args, **kwargs):
        raise AssertionError("the LangChain chat-model layer was used")

    monkeypatch.setattr(ChatOpenAI, "_agenerate", refuse)
    monkeypatch.setattr(ChatOpenAI, "_astream", refuse)
    script_turn(provider)
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(turn_request())
        tokens = [e async for e in refiner.astream(turn_request(), reply_tokens=True)]
    assert result.degraded is None and result.reply == EDITED["reply"]
    assert result.usage.llm_calls == 4
    assert "".join(t.text for t in tokens if isinstance(t, ReplyToken)) == EDITED["reply"]


@pytest.mark.parametrize("mode", ["json_schema", "function_calling", "json_mode"])
async def test_both_paths_send_the_same_request_bodies(provider, http_config, monkeypatch, mode):
    provider.set_default("coherence", PASS)
    provider.set_default("editor", EDITED)
    history = [
        SystemMessage("[agent: responder]\nAnswer."),
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ]
    bodies: dict[str, list[dict]] = {}
    for path in PATHS:
        model = built(http_config(), path, monkeypatch)
        since = len(provider.calls)
        await call_structured(model, CriticOutput, CRITIC, agent="coherence", method=mode)
        await stream_structured(
            model, EditorOutput, EDITOR, agent="editor", method=mode, field="reply",
            on_delta=lambda _: None,
        )  # fmt: skip
        await call_message(model, history, agent="responder")
        bodies[path] = [call.body for call in provider.calls[since:]]
    assert len(bodies["direct"]) == 3
    assert bodies["direct"] == bodies["langchain"]
    assert [b["stream"] for b in bodies["direct"]] == [False, True, False]


@pytest.mark.parametrize("path", PATHS)
async def test_usage_retries_and_retry_after_are_the_same_on_both_paths(
    provider, http_config, monkeypatch, path
):
    if path == "langchain":
        monkeypatch.setattr(direct, "register", lambda model, target: None)
    script_turn(provider)
    provider.script("planner", Fail(429, "slow down", retry_after=0.4))
    provider.script("factuality", Fail(503, "busy"), Fail(503, "busy"))  # out of retries
    async with Refiner(http_config(max_retries=1)) as refiner:
        result = await refiner.arefine(turn_request())
    first, second = provider.calls_for("planner")[:2]
    assert second.started - first.ended >= 0.4
    usage = result.usage
    assert [d.step for d in result.degraded] == ["factuality"]
    assert (usage.llm_calls, usage.retries, usage.failed_calls) == (6, 2, 3)
    by_agent = {name: (u.calls, u.retries, u.failed_calls) for name, u in usage.by_agent.items()}
    assert by_agent == {
        "planner": (2, 1, 1),
        "factuality": (2, 1, 2),
        "coherence": (1, 0, 0),
        "editor": (1, 0, 0),
    }
    answered = [c for c in provider.calls if c.usage]
    assert usage.prompt_tokens == sum(c.usage["prompt_tokens"] for c in answered)
    assert usage.completion_tokens == sum(c.usage["completion_tokens"] for c in answered)
    assert usage.by_agent["editor"].completion_tokens > 0


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", ["json_schema", "function_calling"])
async def test_the_editors_reply_streams_on_both_paths(
    provider, http_config, monkeypatch, path, mode
):
    if path == "langchain":
        monkeypatch.setattr(direct, "register", lambda model, target: None)
    script_turn(provider)
    async with Refiner(http_config(structured_output=mode)) as refiner:
        events = [e async for e in refiner.astream(turn_request(), reply_tokens=True)]
    tokens = [e.text for e in events if isinstance(e, ReplyToken)]
    assert len(tokens) > 3 and "".join(tokens) == EDITED["reply"]
    [editor] = provider.calls_for("editor")
    assert editor.stream
    result = events[-1].result
    assert result.reply == EDITED["reply"] and result.usage.by_agent["editor"].calls == 1
    assert result.usage.by_agent["editor"].completion_tokens > 0


class Observer(AsyncCallbackHandler):
    """A caller's own handler: what it is told of chat-model runs."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.names: list[str | None] = []
        self.ended: list[Any] = []

    async def on_chain_start(self, serialized, inputs, *, run_id, **kwargs) -> None:
        self.names.append(kwargs.get("name"))

    async def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs) -> None:
        self.started.append(kwargs)
        self.names.append(kwargs.get("name"))

    async def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        self.ended.append(response)


@pytest.mark.parametrize("path", PATHS)
async def test_a_callers_handler_sees_each_call_as_a_named_run(
    provider, http_config, monkeypatch, path
):
    provider.set_default("coherence", revise("nice", "lovely"))
    model = built(http_config(), path, monkeypatch)
    observer, tracker = Observer(), UsageTracker()

    async def work(_: None) -> CriticOutput:
        return await call_structured(
            model, CriticOutput, CRITIC, agent="coherence", method="json_schema"
        )

    config = {"callbacks": [observer, tracker], "tags": ["mine"], "metadata": {"who": "me"}}
    output = await RunnableLambda(work).ainvoke(None, config=config)
    assert output.verdict == "revise"
    # The run named by the agent: the chat-model run itself (direct), or the structured-output
    # chain around it (LangChain); the chat-model run carries the agent's tags and metadata.
    assert "coherence" in observer.names
    [run] = observer.started
    assert {"agent:coherence", "mine"} <= set(run["tags"])
    assert run["metadata"]["redraft_agent"] == "coherence" and run["metadata"]["who"] == "me"
    [ended] = [r for r in observer.ended if r.generations and r.generations[0]]
    assert ended.generations[0][0].message.usage_metadata["output_tokens"] > 0
    # counted once, however many handlers listen
    assert tracker.usage.llm_calls == 1 and tracker.usage.completion_tokens > 0


@pytest.mark.parametrize("path", PATHS)
async def test_a_graph_streamed_in_messages_mode_gets_the_calls_tokens(
    provider, http_config, monkeypatch, path
):
    provider.set_default("coherence", revise("nice", "lovely"))
    model = built(http_config(), path, monkeypatch)

    class State(TypedDict):
        outputs: Annotated[list[CriticOutput], operator.add]

    async def critic(state: State) -> dict:
        output = await call_structured(
            model, CriticOutput, CRITIC, agent="coherence", method="json_schema"
        )
        return {"outputs": [output]}

    graph = StateGraph(State).add_node(critic).add_edge(START, "critic").compile()
    chunks = [
        (chunk, meta)
        async for chunk, meta in graph.astream({"outputs": []}, stream_mode="messages")
        if isinstance(chunk, AIMessageChunk)
    ]
    assert len(chunks) > 3
    assert {meta["langgraph_node"] for _, meta in chunks} == {"critic"}
    text = "".join(str(chunk.content) for chunk, _ in chunks)
    assert CriticOutput.model_validate_json(text).verdict == "revise"
    [call] = provider.calls_for("coherence")
    assert call.stream


@pytest.mark.parametrize("path", PATHS)
async def test_a_hung_call_is_cut_at_timeout_s_from_sending(
    provider, http_config, monkeypatch, path
):
    from redraft.testing import Fault

    provider.script("coherence", Fault("hang"))
    model = built(http_config(timeout_s=0.5), path, monkeypatch)
    tracker = UsageTracker()

    async def work(_: None) -> None:
        await call_structured(model, CriticOutput, CRITIC, agent="coherence", method="json_schema")

    started = time.perf_counter()
    with pytest.raises(Exception, match=r"within 0\.5 s") as info:
        await RunnableLambda(work).ainvoke(None, config={"callbacks": [tracker]})
    assert 0.5 <= time.perf_counter() - started < 2.0
    assert provider.base_url in str(info.value)
    assert (tracker.usage.llm_calls, tracker.usage.failed_calls) == (1, 1)


async def test_the_benchmarks_lean_peer_makes_redrafts_five_calls(provider, http_config):
    """`benchmarks/lean_peer.py` compares like with like: the same agents, calls and
    structured-output mode as redraft's five-call turn."""
    import openai

    from benchmarks.lean_peer import build_peer, redraft_request
    from benchmarks.perf_common import ASPECTS, script_turn

    script_turn(provider, ASPECTS)
    config = http_config(
        planner="all",
        critics=list(ASPECTS),
        structured_output="json_schema",
        memory=False,  # as the benchmark runs it: no memory call after the turn
        kb="off",
    )
    async with Refiner(config) as refiner:
        await refiner.arefine(redraft_request(0))
    ours = sorted((c.agent, c.response_format["type"], c.stream) for c in provider.calls)
    provider.calls.clear()
    async with openai.AsyncOpenAI(base_url=provider.base_url, api_key="k") as client:
        out = await build_peer(client).ainvoke({"query": "Can I double my dose?"})
    theirs = sorted((c.agent, c.response_format["type"], c.stream) for c in provider.calls)
    assert len(ours) == 5 and ours == theirs
    assert len(out["critiques"]) == 4 and out["reply"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>502 Bad Gateway</html>", "not a chat completion.*502 Bad Gateway"),
        (b'{"choices": []}', "no choices"),
        (b'{"error": {"message": "overloaded"}}', "overloaded"),
    ],
)
def test_a_200_without_a_reply_is_an_error_that_says_what_came(body, says):
    with pytest.raises(direct.ProviderReplyError, match=says):
        direct._read(body)
