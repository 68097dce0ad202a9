"""FakeProvider must look like OpenAI to the real `openai` SDK and to `ChatOpenAI`."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from redraft.testing.agents import agent_of
from redraft.testing.fake_provider import Fail, FakeProvider, RecordedCall, ToolCall

MODEL = "gpt-4o-mini"
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query", "limit"],
        },
    },
}


class Verdict(BaseModel):
    verdict: Literal["pass", "revise"]
    reasons: list[str] = Field(min_length=1)


def client(provider: FakeProvider, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.base_url, api_key="test", max_retries=max_retries)


def chat_model(provider: FakeProvider, **kwargs) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=provider.base_url, api_key="test", model=MODEL, max_retries=0, **kwargs
    )


def messages(agent: str | None = None, user: str = "Is the sky green?") -> list[dict]:
    system = f"[agent: {agent}] Judge the draft. Answer in JSON." if agent else "Be helpful."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# -- plain OpenAI protocol ----------------------------------------------------------------


def test_lists_configured_models() -> None:
    with FakeProvider(models=["gpt-4o-mini", "gpt-4.1"]) as provider:
        assert [model.id for model in client(provider).models.list()] == ["gpt-4o-mini", "gpt-4.1"]


def test_text_reply_falls_back_to_a_deterministic_echo(provider: FakeProvider) -> None:
    completion = client(provider).chat.completions.create(
        model="any-model-name", messages=messages(user="Tell me a story")
    )

    assert completion.choices[0].message.content == "Scripted reply to: Tell me a story"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6, 7)
    assert completion.usage.total_tokens == 13
    [call] = provider.calls
    assert (call.agent, call.model, call.status, call.stream) == (
        "default",
        "any-model-name",
        200,
        False,
    )
    assert call.response == "Scripted reply to: Tell me a story"
    assert call.started <= call.ended


def test_streamed_text_with_usage(provider: FakeProvider) -> None:
    provider.script("writer", "The sky is blue, not green.")

    stream = client(provider).chat.completions.create(
        model=MODEL,
        messages=messages("writer"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) == 6
    assert "".join(deltas) == "The sky is blue, not green."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert provider.calls[0].ended is not None


def test_json_schema_defaults_to_a_schema_instance(provider: FakeProvider) -> None:
    completion = client(provider).chat.completions.parse(
        model=MODEL, messages=messages("critic"), response_format=Verdict
    )

    assert completion.choices[0].message.parsed == Verdict(verdict="pass", reasons=["example"])
    assert provider.calls[0].response == {"verdict": "pass", "reasons": ["example"]}


def test_scripted_pydantic_models_are_sent_as_json(provider: FakeProvider) -> None:
    scripted = Verdict(verdict="revise", reasons=["the sky is blue"])
    provider.script("critic", scripted)

    completion = client(provider).chat.completions.parse(
        model=MODEL, messages=messages("critic"), response_format=Verdict
    )

    assert completion.choices[0].message.parsed == scripted


def test_json_object_uses_scripted_dict_or_empty_object(provider: FakeProvider) -> None:
    provider.script("critic", {"verdict": "revise"})
    openai_client = client(provider)

    replies = [
        openai_client.chat.completions.create(
            model=MODEL, messages=messages("critic"), response_format={"type": "json_object"}
        )
        for _ in range(2)
    ]

    assert [json.loads(r.choices[0].message.content or "") for r in replies] == [
        {"verdict": "revise"},
        {},
    ]


def test_forced_tool_defaults_to_schema_instance(provider: FakeProvider) -> None:
    completion = client(provider).chat.completions.create(
        model=MODEL,
        messages=messages(),
        tools=[SEARCH_TOOL],
        tool_choice={"type": "function", "function": {"name": "search"}},
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [tool_call] = choice.message.tool_calls or []
    assert tool_call.type == "function"
    assert tool_call.function.name == "search"
    assert json.loads(tool_call.function.arguments) == {"query": "example", "limit": 0}
    assert tool_call.id.startswith("call_")


def test_scripted_dict_becomes_tool_arguments_when_tools_are_offered(
    provider: FakeProvider,
) -> None:
    provider.script("researcher", {"query": "sky colour", "limit": 3})

    completion = client(provider).chat.completions.create(
        model=MODEL, messages=messages("researcher"), tools=[SEARCH_TOOL]
    )

    [tool_call] = completion.choices[0].message.tool_calls or []
    assert json.loads(tool_call.function.arguments) == {"query": "sky colour", "limit": 3}
    assert provider.calls[0].response == ToolCall(
        "search", {"query": "sky colour", "limit": 3}, tool_call.id
    )


def test_parallel_tool_calls_stream_with_indexes(provider: FakeProvider) -> None:
    provider.script(
        "researcher", [ToolCall("search", {"query": "a b c", "limit": 1}), ToolCall("search")]
    )

    stream = client(provider).chat.completions.create(
        model=MODEL, messages=messages("researcher"), tools=[SEARCH_TOOL], stream=True
    )
    arguments: dict[int, str] = {}
    fragments = 0
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            arguments[delta.index] = arguments.get(delta.index, "") + (
                delta.function.arguments or ""
            )
            fragments += 1

    assert {i: json.loads(a) for i, a in arguments.items()} == {
        0: {"query": "a b c", "limit": 1},
        1: {"query": "example", "limit": 0},
    }
    assert fragments > 4  # arguments arrive in pieces, after an opening delta per call


def test_unknown_routes_and_bad_requests_are_openai_errors(provider: FakeProvider) -> None:
    missing = httpx.get(f"{provider.base_url}/nothing-here")
    invalid = httpx.post(f"{provider.base_url}/chat/completions", json={"model": MODEL})

    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert invalid.status_code == 400
    assert invalid.json()["error"] == {
        "message": "'messages' must be a non-empty list",
        "type": "invalid_request_error",
        "code": "invalid_request",
        "param": None,
    }


# -- scripting ----------------------------------------------------------------------------


def test_agent_is_read_from_the_first_system_message() -> None:
    parts = [{"type": "text", "text": "Intro."}, {"type": "text", "text": "[agent: fact_check] go"}]

    assert agent_of([{"role": "system", "content": parts}]) == "fact_check"
    assert agent_of([{"role": "user", "content": "[agent: critic]"}]) == "default"
    assert agent_of([{"role": "system", "content": "[agent: Critic]"}]) == "default"
    assert (
        agent_of(
            [
                {"role": "system", "content": "no marker"},
                {"role": "system", "content": "[agent: critic]"},
            ]
        )
        == "default"
    )


def test_scripts_are_per_agent_then_default_then_fallback(provider: FakeProvider) -> None:
    provider.script("critic", "first", "second")
    provider.set_default("critic", "sticky")
    openai_client = client(provider)

    def ask(agent: str | None) -> str | None:
        completion = openai_client.chat.completions.create(model=MODEL, messages=messages(agent))
        return completion.choices[0].message.content

    answers = [ask("critic"), ask("planner"), ask("critic"), ask("critic"), ask("critic")]

    assert answers == [
        "first",
        "Scripted reply to: Is the sky green?",
        "second",
        "sticky",
        "sticky",
    ]
    assert [call.agent for call in provider.calls_for("critic")] == ["critic"] * 4


def test_callable_scripts_see_the_recorded_call(provider: FakeProvider) -> None:
    seen: list[RecordedCall] = []

    def answer(call: RecordedCall) -> str:
        seen.append(call)
        return f"{len(call.messages)} messages"

    provider.set_default("critic", answer)

    completion = client(provider).chat.completions.create(model=MODEL, messages=messages("critic"))

    assert completion.choices[0].message.content == "2 messages"
    assert seen == provider.calls


def test_reset_clears_log_scripts_and_failures(provider: FakeProvider) -> None:
    provider.script("default", "scripted")
    provider.fail_next(3)
    provider.error_rate = 1.0
    provider.reset()

    completion = client(provider).chat.completions.create(model=MODEL, messages=messages())

    assert completion.choices[0].message.content == "Scripted reply to: Is the sky green?"
    assert len(provider.calls) == 1


# -- failures -----------------------------------------------------------------------------


def test_scripted_failure_surfaces_as_sdk_exception(provider: FakeProvider) -> None:
    provider.script("critic", Fail(500, "boom"), "recovered")
    openai_client = client(provider)

    with pytest.raises(openai.InternalServerError, match="boom"):
        openai_client.chat.completions.create(model=MODEL, messages=messages("critic"))
    completion = openai_client.chat.completions.create(model=MODEL, messages=messages("critic"))

    assert completion.choices[0].message.content == "recovered"
    assert [call.status for call in provider.calls] == [500, 200]


def test_rate_limit_carries_retry_after_and_does_not_consume_scripts(
    provider: FakeProvider,
) -> None:
    provider.script("critic", "after the limit")
    provider.fail_next(1, status=429, agent="critic", retry_after=0.05)

    with pytest.raises(openai.RateLimitError) as caught:
        client(provider).chat.completions.create(model=MODEL, messages=messages("critic"))
    assert caught.value.response.headers["retry-after"] == "0.05"
    assert caught.value.code == "rate_limit_exceeded"

    provider.fail_next(1, status=429, retry_after=0.05)
    retried = client(provider, max_retries=1).chat.completions.create(
        model=MODEL, messages=messages("critic")
    )
    assert retried.choices[0].message.content == "after the limit"
    assert [call.status for call in provider.calls] == [429, 429, 200]


def test_fail_next_only_hits_the_named_agent(provider: FakeProvider) -> None:
    provider.fail_next(1, status=503, agent="critic")
    openai_client = client(provider)

    openai_client.chat.completions.create(model=MODEL, messages=messages("planner"))
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model=MODEL, messages=messages("critic"))

    assert [(c.agent, c.status) for c in provider.calls] == [("planner", 200), ("critic", 503)]


def test_error_rate_is_deterministic_per_seed() -> None:
    def statuses(seed: int) -> list[int | None]:
        with FakeProvider(error_rate=0.5, error_status=502, seed=seed) as provider:
            openai_client = client(provider)
            for _ in range(12):
                try:
                    openai_client.chat.completions.create(model=MODEL, messages=messages())
                except openai.InternalServerError:
                    pass
            return [call.status for call in provider.calls]

    first = statuses(seed=7)

    assert first == statuses(seed=7)
    assert set(first) == {200, 502}


def test_a_raising_script_becomes_a_500_not_a_hang(provider: FakeProvider) -> None:
    provider.script("critic", lambda call: 1 / 0)

    with pytest.raises(openai.InternalServerError, match="ZeroDivisionError"):
        client(provider).chat.completions.create(model=MODEL, messages=messages("critic"))
    assert provider.calls[0].status == 500


# -- timing -------------------------------------------------------------------------------


async def test_concurrent_calls_overlap_under_latency() -> None:
    async with FakeProvider(latency_s=0.2) as provider:
        async_client = openai.AsyncOpenAI(base_url=provider.base_url, api_key="test")
        agents = ["factuality", "coherence", "personalization"]

        await asyncio.gather(
            *(
                async_client.chat.completions.create(model=MODEL, messages=messages(agent))
                for agent in agents
            )
        )
        await async_client.chat.completions.create(model=MODEL, messages=messages("synthesizer"))

        assert provider.max_in_flight() == 3
        assert provider.max_in_flight(agents=["factuality", "synthesizer"]) == 1
        # asyncio may wake a millisecond early; the latency is applied to every call
        assert all(call.ended - call.started >= 0.19 for call in provider.calls)


def test_tokens_per_s_paces_streamed_chunks(provider: FakeProvider) -> None:
    provider.tokens_per_s = 50
    provider.script("default", "one two three four five")

    list(client(provider).chat.completions.create(model=MODEL, messages=messages(), stream=True))

    [call] = provider.calls
    assert call.ended - call.started >= 5 / 50


# -- ChatOpenAI ---------------------------------------------------------------------------

# langchain-openai model_dump()s the SDK's parsed completion, whose `parsed` field is typed
# None; upstream bug langchain-ai/langchain#35538, unrelated to the fake provider.
upstream_parsed_warning = pytest.mark.filterwarnings(
    "ignore:Pydantic serializer warnings:UserWarning"
)


@upstream_parsed_warning
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_chat_openai_structured_output(provider: FakeProvider, method: str) -> None:
    scripted = {"verdict": "revise", "reasons": ["green is wrong"]}
    provider.set_default("critic", scripted if method == "json_mode" else None)
    structured = chat_model(provider).with_structured_output(Verdict, method=method)

    invoked = structured.invoke(messages("critic"))
    streamed = list(structured.stream(messages("critic")))

    expected = (
        Verdict.model_validate(scripted)
        if method == "json_mode"
        else Verdict(verdict="pass", reasons=["example"])
    )
    assert invoked == expected
    assert streamed[-1] == expected
    assert [call.stream for call in provider.calls] == [False, True]


@upstream_parsed_warning
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
async def test_chat_openai_structured_output_async_stream(
    provider: FakeProvider, method: str
) -> None:
    scripted = {"verdict": "revise", "reasons": ["streamed in pieces"]}
    provider.set_default("critic", scripted)
    structured = chat_model(provider).with_structured_output(Verdict, method=method)

    outputs = [output async for output in structured.astream(messages("critic"))]

    assert outputs[-1] == Verdict.model_validate(scripted)
    assert provider.calls[0].stream


async def test_chat_openai_streams_text_with_usage(provider: FakeProvider) -> None:
    provider.script("writer", "A short streamed answer.")
    llm = chat_model(provider, stream_usage=True)

    chunks = [chunk async for chunk in llm.astream(messages("writer"))]

    merged = sum(chunks[1:], chunks[0])
    assert isinstance(merged, AIMessageChunk)
    assert merged.content == "A short streamed answer."
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 4


def test_chat_openai_tool_calls(provider: FakeProvider) -> None:
    provider.script("researcher", ToolCall("search", {"query": "sky", "limit": 2}))
    llm = chat_model(provider).bind_tools([SEARCH_TOOL])

    message = llm.invoke(messages("researcher"))

    [tool_call] = message.tool_calls
    assert (tool_call["name"], tool_call["args"]) == ("search", {"query": "sky", "limit": 2})


def test_chat_openai_surfaces_injected_errors(provider: FakeProvider) -> None:
    provider.fail_next(status=500)

    with pytest.raises(openai.InternalServerError):
        chat_model(provider).invoke(messages())
