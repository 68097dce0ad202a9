"""ScriptedChatModel behaves like a real chat model: text, structured output, tools, streaming."""

from __future__ import annotations

import asyncio
import copy
import operator
from typing import Annotated, Any, Literal, TypedDict

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langgraph.graph import START, StateGraph
from pydantic import BaseModel

from redraft.testing import ScriptedChatModel
from redraft.testing.scripted import RecordedCall

METHODS = ["json_schema", "function_calling", "json_mode"]


class Verdict(BaseModel):
    verdict: Literal["pass", "revise"]
    confidence: float


class VerdictDict(TypedDict):
    verdict: Literal["pass", "revise"]
    confidence: float


REVISE = {"verdict": "revise", "confidence": 0.5}


def prompt(agent: str, text: str = "check this reply") -> list:
    return [SystemMessage(f"[agent: {agent}] You review replies."), HumanMessage(text)]


def merge(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    return merged


# Text


def test_invoke_unscripted_echoes_last_human_message(scripted: ScriptedChatModel) -> None:
    reply = scripted.invoke([HumanMessage("first"), AIMessage("ok"), HumanMessage("x" * 100)])

    assert reply.content == "Scripted reply to: " + "x" * 80
    assert reply.response_metadata["model_name"] == "scripted"
    assert reply.usage_metadata == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    [call] = scripted.calls
    assert (call.agent, call.method, call.schema, call.stream) == ("default", None, None, False)
    assert call.messages[-1] == {"role": "user", "content": "x" * 100}
    assert call.response == reply


async def test_ainvoke_returns_scripted_text_then_serialized_value() -> None:
    model = ScriptedChatModel(script={"default": ["Hello there.", {"a": 1}]})

    assert (await model.ainvoke("hi")).content == "Hello there."
    assert (await model.ainvoke("hi")).content == '{"a": 1}'


def test_stream_splits_text_into_words_and_ends_with_usage() -> None:
    model = ScriptedChatModel(script={"default": ["The sky is blue today."]})

    chunks = list(model.stream("colour?"))

    assert len(chunks) > 3
    assert merge(chunks).content == "The sky is blue today."
    assert chunks[-1].usage_metadata == {"input_tokens": 1, "output_tokens": 5, "total_tokens": 6}
    assert merge(chunks).response_metadata["model_name"] == "scripted"
    assert model.calls[0].stream


# Structured output


@pytest.mark.parametrize("method", METHODS)
def test_structured_output_returns_scripted_value(method: str) -> None:
    model = ScriptedChatModel(script={"default": [REVISE, '{"verdict": "pass", "confidence": 1}']})
    structured = model.with_structured_output(Verdict, method=method)

    assert structured.invoke("judge") == Verdict(verdict="revise", confidence=0.5)
    assert structured.invoke("judge") == Verdict(verdict="pass", confidence=1)
    call = model.calls[0]
    assert call.method == method
    assert call.schema is not None
    assert set(call.schema["properties"]) == {"verdict", "confidence"}


@pytest.mark.parametrize("method", METHODS)
def test_unscripted_structured_call_gets_minimal_instance(method: str) -> None:
    structured = ScriptedChatModel().with_structured_output(Verdict, method=method)

    assert structured.invoke("judge") == Verdict(verdict="pass", confidence=0)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("schema", [VerdictDict, Verdict.model_json_schema()])
def test_non_pydantic_schemas_give_dicts(schema: Any, method: str) -> None:
    model = ScriptedChatModel(defaults={"default": REVISE})

    assert model.with_structured_output(schema, method=method).invoke("judge") == REVISE


@pytest.mark.parametrize("method", METHODS)
async def test_include_raw_returns_raw_and_parsed(method: str) -> None:
    model = ScriptedChatModel(script={"default": [REVISE]})
    structured = model.with_structured_output(Verdict, method=method, include_raw=True)

    out = await structured.ainvoke("judge")

    assert out["parsed"] == Verdict(**REVISE)
    assert out["parsing_error"] is None
    assert isinstance(out["raw"], AIMessage)
    assert out["raw"].usage_metadata["output_tokens"] >= 1
    if method == "function_calling":
        assert out["raw"].tool_calls[0]["args"] == REVISE


@pytest.mark.parametrize("method", METHODS)
async def test_invalid_json_is_a_parse_error(method: str) -> None:
    model = ScriptedChatModel(defaults={"critic": '{"verdict": "pass", "confid'})

    with pytest.raises(OutputParserException):
        await model.with_structured_output(Verdict, method=method).ainvoke(prompt("critic"))
    out = await model.with_structured_output(Verdict, method=method, include_raw=True).ainvoke(
        prompt("critic")
    )
    assert out["parsed"] is None
    assert isinstance(out["parsing_error"], OutputParserException)


@pytest.mark.parametrize("method", METHODS)
def test_structured_output_streams_json_in_chunks(method: str) -> None:
    model = ScriptedChatModel(defaults={"default": REVISE})
    structured = model.with_structured_output(Verdict, method=method)

    raw_chunks = list(structured.first.stream("x"))
    parsed = list(structured.stream("x"))

    assert len(raw_chunks) > 3
    assert parsed[-1] == Verdict(**REVISE)


# Tools


def test_scripted_tool_call_survives_streaming() -> None:
    def search(query: str, limit: int = 3) -> str:
        """Search the web."""
        return query

    tool_call = {"name": "search", "args": {"query": "capital of France", "limit": 2}, "id": "c1"}
    model = ScriptedChatModel(
        defaults={"default": AIMessage("Let me look.", tool_calls=[tool_call])}
    )
    with_tools = model.bind_tools([search])

    chunks = list(with_tools.stream("where is Paris?"))
    merged = merge(chunks)

    assert sum(1 for chunk in chunks if chunk.tool_call_chunks) > 1
    assert merged.content == "Let me look."
    assert [(tc["name"], tc["args"], tc["id"]) for tc in merged.tool_calls] == [
        ("search", tool_call["args"], "c1")
    ]
    assert with_tools.invoke("again").tool_calls == merged.tool_calls
    assert model.calls[0].tools[0]["function"]["name"] == "search"
    assert model.calls[0].method is None


# Scripting semantics


def test_queues_are_per_agent_then_fall_back_to_defaults() -> None:
    model = ScriptedChatModel(script={"critic": ["c1", "c2"]}, defaults={"critic": "sticky"})
    model.script("editor", "e1")

    replies = [model.invoke(prompt(agent)).content for agent in ("critic", "editor", "critic")]
    replies += [model.invoke(prompt("critic")).content for _ in range(2)]

    assert replies == ["c1", "e1", "c2", "sticky", "sticky"]
    assert [call.agent for call in model.calls_for("editor")] == ["editor"]
    assert model.invoke(prompt("editor", "more")).content == "Scripted reply to: more"


def test_exception_response_is_raised_and_recorded() -> None:
    model = ScriptedChatModel().script("critic", TimeoutError("provider down"), "recovered")

    with pytest.raises(TimeoutError, match="provider down"):
        model.invoke(prompt("critic"))
    assert model.invoke(prompt("critic")).content == "recovered"
    assert isinstance(model.calls[0].response, TimeoutError)
    assert model.calls[0].ended is not None


def test_callable_response_sees_the_call() -> None:
    def answer(call: RecordedCall) -> dict:
        return {"verdict": "revise" if "typo" in call.messages[-1]["content"] else "pass"}

    model = ScriptedChatModel(defaults={"default": answer})
    structured = model.with_structured_output(VerdictDict)

    assert structured.invoke("a typo here")["verdict"] == "revise"
    assert structured.invoke("fine")["verdict"] == "pass"


def test_copies_share_script_and_log() -> None:
    model = ScriptedChatModel(defaults={"default": "sticky"}).script("default", "one", "two")

    assert model.model_copy().invoke("x").content == "one"
    assert copy.deepcopy(model).invoke("x").content == "two"
    assert len(model.calls) == 2
    model.reset()
    assert model.calls == []
    assert model.invoke("x").content == "Scripted reply to: x"


async def test_concurrent_calls_overlap() -> None:
    model = ScriptedChatModel(latency_s=0.1)

    await asyncio.gather(*(model.ainvoke(prompt(agent)) for agent in ("a", "b", "c")))
    await model.ainvoke(prompt("a"))

    assert model.max_in_flight() == 3
    assert model.max_in_flight("a") == 1
    assert model.max_in_flight(["a", "b"]) == 2


# LangGraph


async def test_langgraph_messages_stream_yields_chunks_and_structured_value() -> None:
    class State(TypedDict):
        verdicts: Annotated[list[Verdict], operator.add]

    model = ScriptedChatModel(defaults={"critic": REVISE})

    async def critic(state: State) -> dict:
        verdict = await model.with_structured_output(Verdict).ainvoke(prompt("critic"))
        return {"verdicts": [verdict]}

    graph = StateGraph(State).add_node(critic).add_edge(START, "critic").compile()

    chunks = [
        chunk
        async for chunk, _ in graph.astream({"verdicts": []}, stream_mode="messages")
        if isinstance(chunk, AIMessageChunk)
    ]

    assert len(chunks) > 3
    assert merge(chunks).content == '{"verdict": "revise", "confidence": 0.5}'
    assert (await graph.ainvoke({"verdicts": []}))["verdicts"] == [Verdict(**REVISE)]
    assert [call.stream for call in model.calls] == [True, False]
