"""`ScriptedChatModel`: an offline LangChain chat model that answers from a script.

Tests and offline demos script what each redraft agent answers (agents are told apart by the
`[agent: NAME]` marker of their system message) and then assert on the recorded calls.
Unlike LangChain's `GenericFakeChatModel`, it implements `bind_tools` and
`with_structured_output` (all three methods, with the output shapes of `ChatOpenAI`) and
streams tool calls, so code under test takes the same paths as with a real provider.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal, Self, TypeGuard, get_args

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
    make_invalid_tool_call,
    parse_tool_call,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import (
    convert_to_openai_function,
    convert_to_openai_tool,
)
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, PrivateAttr

from redraft.testing.agents import agent_of
from redraft.testing.schemas import instance_for_schema

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]

_JSON_PIECE_CHARS = 8
"""Streamed JSON (content or tool arguments) arrives in slices this long."""


@dataclass
class RecordedCall:
    """One call the model received, as tests assert on it."""

    agent: str
    messages: list[dict[str, Any]]
    """The prompt as OpenAI-style dicts."""
    schema: dict[str, Any] | None
    """JSON schema the reply must follow; None for a text call."""
    method: StructuredMethod | None
    tools: list[dict[str, Any]]
    """Bound tools in OpenAI format."""
    stream: bool
    started: float
    """`time.monotonic()` when the call arrived."""
    ended: float | None = None
    """`time.monotonic()` when the reply (or error) was produced; None while in flight."""
    response: AIMessage | BaseException | None = None


Response = (
    str | dict[str, Any] | list[Any] | AIMessage | BaseException | Callable[[RecordedCall], Any]
)
"""What a script holds: text (JSON text for a structured call), a structured value, a
complete message, an exception to raise, or a function of the call returning one of these."""

_UNSCRIPTED = object()


class _Script:
    """Queues, defaults and call log, shared by every copy and binding of one model."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queues: defaultdict[str, deque[Response]] = defaultdict(deque)
        self.defaults: dict[str, Response] = {}
        self.calls: list[RecordedCall] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> _Script:
        # `model_copy(deep=True)` must not fork the script: the copy answers from it too.
        return self

    def take(self, call: RecordedCall) -> Any:
        """Log the call and pop its response: queued first, then the agent's default."""
        with self.lock:
            self.calls.append(call)
            queue = self.queues.get(call.agent)
            if queue:
                return queue.popleft()
            return self.defaults.get(call.agent, _UNSCRIPTED)


@dataclass(frozen=True)
class _Request:
    """What a call asks for, read from the kwargs that `bind_tools` / `bind` attached."""

    method: StructuredMethod | None
    schema: dict[str, Any] | None
    tool_name: str | None
    tools: list[dict[str, Any]]

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> _Request:
        tools = list(kwargs.get("tools") or [])
        functions = {
            tool["function"]["name"]: tool["function"] for tool in tools if "function" in tool
        }
        forced = _forced_tool(kwargs.get("tool_choice"), list(functions))
        if forced is not None:
            schema = functions[forced].get("parameters", {})
            return cls("function_calling", schema, forced, tools)
        response_format = kwargs.get("response_format")
        if response_format is None:
            return cls(None, None, None, tools)
        response_format = _response_format(response_format)
        if response_format["type"] == "json_object":
            return cls("json_mode", response_format.get("schema"), None, tools)
        return cls("json_schema", response_format["json_schema"]["schema"], None, tools)


class ScriptedChatModel(BaseChatModel):
    """Chat model that replies with scripted responses per agent and records every call.

    `script` maps agent → responses consumed in order; `defaults` maps agent → a response
    repeated once its queue is empty. Unscripted structured calls get a minimal valid
    instance of the schema, unscripted text calls echo the last human message.
    """

    name: str = "scripted"
    latency_s: float = 0.0
    """Delay of every call (awaited on the async path, so concurrent calls overlap)."""

    _script: _Script = PrivateAttr(default_factory=_Script)

    def __init__(
        self,
        script: dict[str, list[Response]] | None = None,
        defaults: dict[str, Response] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for agent, responses in (script or {}).items():
            self.script(agent, *responses)
        for agent, response in (defaults or {}).items():
            self.set_default(agent, response)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    # Scripting and inspection

    def script(self, agent: str, *responses: Response) -> Self:
        """Queue responses for `agent`, consumed one per call in order."""
        with self._script.lock:
            self._script.queues[agent].extend(responses)
        return self

    def set_default(self, agent: str, response: Response) -> Self:
        """Answer `agent` with `response` whenever its queue is empty."""
        with self._script.lock:
            self._script.defaults[agent] = response
        return self

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call so far, in arrival order (a snapshot)."""
        with self._script.lock:
            return list(self._script.calls)

    def calls_for(self, agent: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.agent == agent]

    def reset(self) -> None:
        """Forget recorded calls, queued responses and defaults (as `FakeProvider.reset`)."""
        with self._script.lock:
            self._script.calls.clear()
            self._script.queues.clear()
            self._script.defaults.clear()

    def max_in_flight(self, agents: str | Iterable[str] | None = None) -> int:
        """Most calls (of `agents`, default all) running at the same moment.

        Tests use it to check that agents meant to run in parallel really do.
        """
        if isinstance(agents, str):
            agents = [agents]
        wanted = None if agents is None else set(agents)
        events: list[tuple[float, int]] = []
        for call in self.calls:
            if wanted is None or call.agent in wanted:
                events.append((call.started, 1))
                events.append((math.inf if call.ended is None else call.ended, -1))
        # At equal times an end sorts before a start: calls that merely touch do not overlap.
        events.sort()
        running = peak = 0
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        return peak

    # LangChain interface

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        strict: bool | None = None,
        response_format: dict[str, Any] | type | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in OpenAI format; a `tool_choice` that forces a tool makes the call
        structured (`function_calling`), a `response_format` makes it `json_schema`."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        if response_format is not None:
            kwargs["response_format"] = _response_format(response_format, strict=strict)
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Same contract as `ChatOpenAI.with_structured_output`, through a real model call.

        A pydantic schema yields instances, anything else dicts; with `include_raw` the
        output is `{"raw", "parsed", "parsing_error"}` and parse errors are returned, not
        raised.
        """
        if method not in get_args(StructuredMethod):
            raise ValueError(f"unknown structured output method {method!r}")
        kwargs["ls_structured_output_format"] = {
            "kwargs": {"method": method, "strict": strict},
            "schema": schema,
        }
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool_name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=tool_name, strict=strict, **kwargs)
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if _is_model(schema)
                else JsonOutputKeyToolsParser(key_name=tool_name, first_tool_only=True)
            )
        else:
            response_format = _response_format(schema, strict=strict)
            if method == "json_mode":
                # OpenAI's json_object format carries no schema; this one keeps it so the
                # call records it and an unscripted reply can still fit it.
                schema_json = response_format["json_schema"]["schema"]
                response_format = {"type": "json_object", "schema": schema_json}
            llm = self.bind(response_format=response_format, **kwargs)
            parser = (
                PydanticOutputParser(pydantic_object=schema)
                if _is_model(schema)
                else JsonOutputParser()
            )
        if include_raw:
            parse = RunnablePassthrough.assign(
                parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
            )
            no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
            return RunnableMap(raw=llm) | parse.with_fallbacks(
                [no_parse], exception_key="parsing_error"
            )
        return llm | parser

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        _, message = self._respond(messages, kwargs, stream=False)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        _, message = await self._arespond(messages, kwargs, stream=False)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call, message = self._respond(messages, kwargs, stream=True)
        yield from _chunks(call, message)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call, message = await self._arespond(messages, kwargs, stream=True)
        for chunk in _chunks(call, message):
            yield chunk

    # Producing replies

    def _respond(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], *, stream: bool
    ) -> tuple[RecordedCall, AIMessage]:
        request, call, response = self._start(messages, kwargs, stream=stream)
        with _settling(call):
            time.sleep(self.latency_s)
            return call, self._reply(request, call, response, messages)

    async def _arespond(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], *, stream: bool
    ) -> tuple[RecordedCall, AIMessage]:
        request, call, response = self._start(messages, kwargs, stream=stream)
        with _settling(call):
            await asyncio.sleep(self.latency_s)
            return call, self._reply(request, call, response, messages)

    def _start(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], *, stream: bool
    ) -> tuple[_Request, RecordedCall, Any]:
        request = _Request.from_kwargs(kwargs)
        openai_messages = convert_to_openai_messages(messages)
        call = RecordedCall(
            agent=agent_of(openai_messages),
            messages=openai_messages,
            schema=request.schema,
            method=request.method,
            tools=request.tools,
            stream=stream,
            started=time.monotonic(),
        )
        return request, call, self._script.take(call)

    def _reply(
        self,
        request: _Request,
        call: RecordedCall,
        response: Any,
        messages: list[BaseMessage],
    ) -> AIMessage:
        if callable(response):
            response = response(call)
        if isinstance(response, BaseException):
            raise response
        if response is _UNSCRIPTED:
            response = _fallback(request, messages)
        message = response if isinstance(response, AIMessage) else _compose(request, response)
        # A fresh copy every time: LangChain stamps ids on replies, and a default reply is
        # shared between calls.
        message = message.model_copy(
            update={
                "usage_metadata": message.usage_metadata or _usage(messages, message),
                "response_metadata": {"model_name": self.name, **message.response_metadata},
            }
        )
        call.response = message
        return message


@contextmanager
def _settling(call: RecordedCall) -> Iterator[None]:
    """Close the call's record whether it ends in a reply, an error or a cancellation."""
    try:
        yield
    except BaseException as exc:
        call.response = exc
        raise
    finally:
        call.ended = time.monotonic()


def _forced_tool(tool_choice: Any, names: list[str]) -> str | None:
    """Name of the tool `tool_choice` forces, if any (forcing "any" tool picks the first)."""
    if isinstance(tool_choice, dict):
        name = tool_choice.get("function", {}).get("name")
    elif tool_choice in ("any", "required", True):
        name = names[0] if names else None
    else:
        name = tool_choice
    return name if name in names else None


def _response_format(schema: dict[str, Any] | type, *, strict: bool | None = None) -> dict:
    """OpenAI `response_format` for a schema, or the format itself if already one."""
    if isinstance(schema, dict) and schema.get("type") in ("json_schema", "json_object"):
        return schema
    function = convert_to_openai_function(schema, strict=strict)
    return {
        "type": "json_schema",
        "json_schema": {
            "name": function["name"],
            "schema": function["parameters"],
            "strict": strict,
        },
    }


def _fallback(request: _Request, messages: list[BaseMessage]) -> Any:
    """Reply of an unscripted call: a minimal fit for the schema, or an echo."""
    if request.method is not None:
        return {} if request.schema is None else instance_for_schema(request.schema)
    last_human = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
    return f"Scripted reply to: {last_human[:80]}"


def _compose(request: _Request, value: str | dict[str, Any] | list[Any]) -> AIMessage:
    """Message carrying a scripted value: text or JSON content, or a tool call."""
    text = value if isinstance(value, str) else json.dumps(value)
    if request.tool_name is None:
        return AIMessage(content=text)
    raw = {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": request.tool_name, "arguments": text},
    }
    try:
        tool_calls, invalid_tool_calls = [parse_tool_call(raw, return_id=True)], []
    except OutputParserException as exc:
        tool_calls, invalid_tool_calls = [], [make_invalid_tool_call(raw, str(exc))]
    # The raw call also goes in `additional_kwargs` (as ChatOpenAI used to put it) so that
    # LangChain's tools parsers raise OutputParserException on malformed arguments instead
    # of returning None, and callers' retry paths can be tested.
    return AIMessage(
        content="",
        tool_calls=tool_calls,
        invalid_tool_calls=invalid_tool_calls,
        additional_kwargs={"tool_calls": [raw]},
    )


def _usage(messages: list[BaseMessage], reply: AIMessage) -> UsageMetadata:
    """Token counts approximated by word counts (at least 1 each)."""
    input_tokens = max(1, sum(len(m.text.split()) for m in messages))
    output_words = len(reply.text.split()) + sum(
        len(json.dumps(tool_call["args"]).split()) for tool_call in reply.tool_calls
    )
    output_tokens = max(1, output_words)
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _is_model(schema: object) -> TypeGuard[type[BaseModel]]:
    """Whether `schema` is a pydantic model class (parsed into instances, not dicts)."""
    return isinstance(schema, type) and is_basemodel_subclass(schema)


def _chunks(call: RecordedCall, message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """Stream `message` as a provider would; merging the chunks gives `message` back.

    Text comes word by word, JSON and tool arguments in short slices, tool calls as
    indexed `tool_call_chunks`; the last chunk carries usage and metadata.
    """
    content = message.content
    pieces: Sequence[str | list[str | dict[Any, Any]]]
    if isinstance(content, str):
        pieces = (
            _json_slices(content)
            if call.method in ("json_schema", "json_mode")
            else _words(content)
        )
    else:
        pieces = [content] if content else []
    chunks = [AIMessageChunk(content=piece, id=message.id) for piece in pieces]
    tool_calls: list[tuple[str | None, str, str | None]] = [
        (tc["name"], json.dumps(tc["args"]), tc["id"]) for tc in message.tool_calls
    ]
    tool_calls += [(tc["name"], tc["args"] or "", tc["id"]) for tc in message.invalid_tool_calls]
    for index, (name, arguments, call_id) in enumerate(tool_calls):
        for n, piece in enumerate(_json_slices(arguments) or [""]):
            first = n == 0
            call_chunk = tool_call_chunk(
                name=name if first else None,
                args=piece,
                id=call_id if first else None,
                index=index,
            )
            chunks.append(AIMessageChunk(content="", id=message.id, tool_call_chunks=[call_chunk]))
    chunks.append(
        AIMessageChunk(
            content="",
            id=message.id,
            additional_kwargs=message.additional_kwargs,
            response_metadata=message.response_metadata,
            usage_metadata=message.usage_metadata,
            chunk_position="last",
        )
    )
    for chunk in chunks:
        yield ChatGenerationChunk(message=chunk)


def _words(text: str) -> list[str]:
    """Split before each word, keeping the whitespace, so the pieces join back to `text`."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def _json_slices(text: str) -> list[str]:
    return [text[i : i + _JSON_PIECE_CHARS] for i in range(0, len(text), _JSON_PIECE_CHARS)]
