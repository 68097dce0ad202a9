"""`RefinedChatModel` used as apps use a chat model: sync and async calls, batch, abatch and
streams in any mix, from threads and from several event loops, in one process; and tool-using
agents (`bind_tools`; an `AIMessage` with tool calls passes through). The base model is ChatOpenAI
over real HTTP to a FakeProvider."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from redraft import RefinedChatModel, RefinerConfig
from redraft.testing import FakeProvider, ToolCall


@pytest.fixture
def llm(provider: FakeProvider, tmp_path) -> RefinedChatModel:
    base = ChatOpenAI(model="m", base_url=provider.base_url, api_key="k", max_retries=0)
    provider.set_default("planner", {"steps": []})  # no critic: one draft call and one plan call
    config = RefinerConfig(planner="llm", checkpointer="memory", home=tmp_path, memory=False)
    model = RefinedChatModel(base, config)
    yield model
    model.close()


def said(message: AIMessage) -> str:
    return str(message.content)


def test_sync_then_asyncio_run_then_sync(llm):
    assert said(llm.invoke("one")) == "Scripted reply to: one"
    assert said(asyncio.run(llm.ainvoke("two"))) == "Scripted reply to: two"
    assert said(asyncio.run(llm.ainvoke("three"))) == "Scripted reply to: three"  # a new loop
    assert said(llm.invoke("four")) == "Scripted reply to: four"


def test_async_first_then_sync(llm):
    assert said(asyncio.run(llm.ainvoke("one"))) == "Scripted reply to: one"
    assert said(llm.invoke("two")) == "Scripted reply to: two"


def test_repeated_batch_and_abatch(llm):
    for round_ in range(2):
        replies = llm.batch([f"b{round_}-{i}" for i in range(3)])
        assert [said(r) for r in replies] == [f"Scripted reply to: b{round_}-{i}" for i in range(3)]
    for round_ in range(2):
        replies = asyncio.run(llm.abatch([f"a{round_}-{i}" for i in range(3)]))
        assert [said(r) for r in replies] == [f"Scripted reply to: a{round_}-{i}" for i in range(3)]


def test_streams_sync_and_async_between_calls(llm):
    assert "".join(str(c.content) for c in llm.stream("s1")) == "Scripted reply to: s1"

    async def astream() -> str:
        return "".join([str(c.content) async for c in llm.astream("s2")])

    assert asyncio.run(astream()) == "Scripted reply to: s2"
    assert said(llm.invoke("s3")) == "Scripted reply to: s3"
    assert asyncio.run(astream()) == "Scripted reply to: s2"


def test_threads_and_their_own_event_loops_share_one_refiner(llm):
    replies: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            if i % 2:
                replies[f"t{i}"] = said(llm.invoke(f"t{i}"))
            else:
                replies[f"t{i}"] = said(asyncio.run(llm.ainvoke(f"t{i}")))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert replies == {f"t{i}": f"Scripted reply to: t{i}" for i in range(6)}
    refiners = {id(llm.refiner)}
    assert len(refiners) == 1


def test_the_refiner_is_made_once_under_concurrent_first_use(provider, tmp_path):
    base = ChatOpenAI(model="m", base_url=provider.base_url, api_key="k", max_retries=0)
    llm = RefinedChatModel(base, RefinerConfig(checkpointer="memory", home=tmp_path))
    seen: list[int] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        seen.append(id(llm.refiner))

    workers = [threading.Thread(target=first_use) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(seen) == 8 and len(set(seen)) == 1
    llm.close()


async def test_threads_of_the_wrapper_across_loops(llm, provider):
    provider.script("responder", "First.", "Second.")
    await llm.ainvoke("hello", thread_id="mixed")
    second = await asyncio.to_thread(llm.invoke, "more", thread_id="mixed")
    assert said(second) == "Second."
    seen = [m["content"] for m in provider.calls_for("responder")[1].messages[1:]]
    assert seen == ["hello", "First.", "more"]


# ── tools ───────────────────────────────────────────────────────────────────────────────


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"{city}: 18 C, light rain."


def test_bind_tools_returns_the_base_models_tool_call(llm, provider):
    provider.script("responder", ToolCall("get_weather", {"city": "Paris"}, id="call_7"))
    message = llm.bind_tools([get_weather]).invoke("Weather in Paris?")
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_7", "type": "tool_call"}
    ]
    assert message.content == ""
    assert [c.agent for c in provider.calls] == ["responder"]
    assert provider.calls[0].tools[0]["function"]["name"] == "get_weather"
    assert message.response_metadata["redraft"]["tool_calls"][0]["id"] == "call_7"


async def test_streamed_tool_calls_arrive_as_tool_call_chunks(llm, provider):
    provider.script("responder", ToolCall("get_weather", {"city": "Rome"}, id="call_8"))
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    message = None
    async for chunk in bound.astream("Weather in Rome?"):
        message = chunk if message is None else message + chunk
    assert message.tool_calls[0]["args"] == {"city": "Rome"}
    assert provider.calls[0].tool_choice == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


def test_an_agent_loop_with_tool_results(llm, provider):
    """The loop a tool-using agent runs: call, tool result, refined answer."""
    provider.script("responder", ToolCall("get_weather", {"city": "Paris"}))
    provider.script("responder", "Paris: 18 C and light rain.")
    agent = llm.bind_tools([get_weather])
    messages = [HumanMessage("Weather in Paris?")]
    call = agent.invoke(messages)
    messages += [
        call,
        ToolMessage(
            get_weather.invoke(call.tool_calls[0]["args"]), tool_call_id=call.tool_calls[0]["id"]
        ),
    ]
    answer = agent.invoke(messages)
    assert answer.content == "Paris: 18 C and light rain." and answer.tool_calls == []
    sent = provider.calls_for("responder")[1].messages
    assert sent[-2]["tool_calls"][0]["id"] == call.tool_calls[0]["id"]
    assert sent[-1]["role"] == "tool" and "light rain" in sent[-1]["content"]


def test_with_structured_output_goes_through_as_a_tool_call(llm, provider):
    class Answer(BaseModel):
        city: str

    provider.script("responder", ToolCall("Answer", {"city": "Oslo"}))
    assert llm.with_structured_output(Answer).invoke("Where?") == Answer(city="Oslo")
