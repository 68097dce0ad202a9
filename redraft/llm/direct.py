"""The direct provider path: a model redraft builds by name is called with the openai SDK's
client and its answer read with pydantic, not through LangChain's chat-model layer.

Why: per call, LangChain's layer (run managers and callbacks, message conversion,
`with_structured_output`) and the SDK's request-parameter transform and response models cost
about four times the provider's HTTP exchange itself (BENCHMARKS.md, "CPU per turn"). The
request bodies are those ChatOpenAI sends for the same model and structured-output mode, so a
server sees no difference. A chat model given from outside keeps the LangChain path.

When something observes LangChain runs — a LangSmith tracer, LangGraph's
`stream_mode="messages"`, a handler of the caller's — a direct call reports to it as a chat-model
run with the agent's run name, tags and metadata, and streams its tokens when a handler asks for
them (as LangChain's chat models do).
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import openai
from langchain_core.callbacks import AsyncCallbackManager, AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langchain_core.utils.function_calling import convert_to_openai_function
from langsmith.utils import tracing_is_enabled
from pydantic import BaseModel, ValidationError

from redraft.errors import RedraftError
from redraft.llm.output import wire_schema
from redraft.llm.usage import RETRY_KEY, UsageTracker, current_tracker, run_config

if TYPE_CHECKING:
    import openai


class ProviderReplyError(RedraftError, RuntimeError):
    """A provider answered 200 with no reply in it (no choices, or an error object)."""


@dataclass(frozen=True)
class Target:
    """Where and how to call one model: what ChatOpenAI was built with."""

    base_url: str | None
    api_key: str
    model: str
    temperature: float | None
    timeout_s: float | None
    connect_s: float | None


_targets: dict[int, Target] = {}
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Target, openai.AsyncOpenAI]]
_clients = weakref.WeakKeyDictionary()


def register(model: Any, target: Target) -> None:
    """Calls to `model` (a ChatOpenAI redraft built) go the direct way."""
    _targets[id(model)] = target
    weakref.finalize(model, _targets.pop, id(model), None)


def target_of(model: Any) -> Target | None:
    return _targets.get(id(model))


def client_for(target: Target) -> openai.AsyncOpenAI:
    """This event loop's client for the target: its own connection pool, since connections
    belong to the loop that opened them. The SDK's own retries are off (`send` retries)."""
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = {}
    client = clients.get(target)
    if client is None:
        import openai  # not at import: it takes a second (see `redraft.refiner` preload)

        timeout = openai.Timeout(target.timeout_s, connect=target.connect_s)
        client = clients[target] = openai.AsyncOpenAI(
            api_key=target.api_key, base_url=target.base_url, timeout=timeout, max_retries=0
        )
    return client


# ── request bodies: what ChatOpenAI sends ────────────────────────────────────────────────


def wire_messages(target: Target, messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The messages as ChatOpenAI writes them (langchain-openai's own converter: an assistant
    turn with tool calls has content null, o-series models take a developer message)."""
    from langchain_openai.chat_models.base import (
        _convert_from_v1_to_chat_completions,
        _convert_message_to_dict,
    )

    wire = [
        _convert_message_to_dict(
            _convert_from_v1_to_chat_completions(m) if isinstance(m, AIMessage) else m
        )
        for m in messages
    ]
    if O_SERIES.match(target.model):
        for message in wire:
            if message["role"] == "system":
                message["role"] = "developer"
    return wire


O_SERIES = re.compile(r"^o\d")


def chat_completions(model: Any) -> bool:
    """Whether ChatOpenAI would call `model` through chat completions (the direct path's API),
    not OpenAI's Responses API (which it prefers for some models and settings)."""
    prefers = getattr(model, "_use_responses_api", None)
    return prefers is not None and not prefers({"tools": [{"type": "function"}]})


@cache
def _function(schema: type[BaseModel]) -> dict[str, Any]:
    return convert_to_openai_function(wire_schema(schema))


@cache
def _response_format(schema: type[BaseModel]) -> dict[str, Any]:
    function = convert_to_openai_function(wire_schema(schema), strict=False)
    function["schema"] = function.pop("parameters")
    return {"type": "json_schema", "json_schema": function}


def request_body(
    target: Target,
    messages: Sequence[BaseMessage],
    *,
    mode: str | None = None,
    schema: type[BaseModel] | None = None,
    stream: bool = False,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The chat-completions body for `messages`, asking for `schema` in the structured-output
    `mode` (json_schema, function_calling or json_mode; None: plain text), and at most
    `max_tokens` of output when given."""
    body: dict[str, Any] = {
        "model": target.model,
        "stream": stream,
        "messages": wire_messages(target, messages),
    }
    if mode == "json_schema" and schema is not None:
        body["response_format"] = _response_format(schema)
    elif mode == "function_calling" and schema is not None:
        function = _function(schema)
        body["parallel_tool_calls"] = False
        body["tool_choice"] = {"type": "function", "function": {"name": function["name"]}}
        body["tools"] = [{"type": "function", "function": function}]
    elif mode == "json_mode":
        body["response_format"] = {"type": "json_object"}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if target.temperature is not None:
        body["temperature"] = target.temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


# ── answers ───────────────────────────────────────────────────────────────────────────────


class _Function(BaseModel):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(BaseModel):
    id: str | None = None
    function: _Function | None = None


class _Message(BaseModel):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0


class _Completion(BaseModel):
    """The parts of a chat completion redraft reads."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


@dataclass
class Reply:
    """What a call returned: the text, the first tool call's arguments (as sent), tokens."""

    text: str = ""
    arguments: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    tool_name: str | None = None

    @property
    def raw(self) -> str | dict[str, Any]:
        """The structured part: the tool call's arguments (a dict when they decode, as
        LangChain reads them), else the text."""
        if self.arguments is None:
            return self.text
        try:
            value = json.loads(self.arguments, strict=False)
        except ValueError:
            return self.arguments
        return value if isinstance(value, dict) else self.arguments

    def message(self, model: str) -> AIMessage:
        """The reply as LangChain would give it (for `call_message` and run observers)."""
        usage = {
            "input_tokens": self.prompt_tokens,
            "output_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        metadata = {"finish_reason": self.finish_reason, "model_name": model}
        calls = []
        if self.arguments is not None:
            raw = self.raw
            name = self.tool_name or ""
            calls = [{"name": name, "args": raw, "id": None}] if isinstance(raw, dict) else []
        return AIMessage(
            content=self.text,
            tool_calls=calls,
            usage_metadata=usage,
            response_metadata=metadata,
        )


def _read(body: bytes) -> Reply:
    try:
        completion = _Completion.model_validate_json(body)
    except ValidationError as exc:
        raise ProviderReplyError(
            f"the provider's answer is not a chat completion ({exc.error_count()} errors): "
            f"{body[:200]!r}"
        ) from None
    if completion.error:
        raise ProviderReplyError(f"the provider answered with an error: {completion.error}")
    if not completion.choices:
        raise ProviderReplyError("the provider's answer has no choices")
    choice = completion.choices[0]
    message = choice.message
    calls = message.tool_calls or []
    function = calls[0].function if calls else None
    usage = completion.usage or _Usage()
    return Reply(
        text=message.content or "",
        arguments=(function.arguments or "") if function is not None else None,
        tool_name=function.name if function is not None else None,
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
        finish_reason=choice.finish_reason,
    )


async def _post(target: Target, body: dict[str, Any]) -> Reply:
    content = await client_for(target).post("/chat/completions", body=body, cast_to=bytes)
    return _read(content)


async def _stream(
    target: Target, body: dict[str, Any], on_piece: Callable[[str, bool], Awaitable[None]]
) -> Reply:
    """An SSE call: each piece of the text or of the first tool call's arguments goes to
    `on_piece(piece, is_arguments)` as it arrives; the whole reply is returned."""
    import openai

    stream = await client_for(target).post(
        "/chat/completions",
        body=body,
        cast_to=dict,
        stream=True,
        stream_cls=openai.AsyncStream[dict],
    )
    reply = Reply()
    text: list[str] = []
    arguments: list[str] = []
    called = False
    async with stream:
        async for chunk in stream:
            usage = chunk.get("usage")
            if usage:
                reply.prompt_tokens = usage.get("prompt_tokens") or 0
                reply.completion_tokens = usage.get("completion_tokens") or 0
            choices = chunk.get("choices") or []
            if not choices:
                continue
            reply.finish_reason = choices[0].get("finish_reason") or reply.finish_reason
            delta = choices[0].get("delta") or {}
            if piece := delta.get("content"):
                text.append(piece)
                await on_piece(piece, False)
            for tool_call in delta.get("tool_calls") or []:
                if tool_call.get("index", 0) != 0:
                    continue  # redraft asks for one call; LangChain reads the first too
                called = True
                function = tool_call.get("function") or {}
                reply.tool_name = reply.tool_name or function.get("name")
                if piece := function.get("arguments"):
                    arguments.append(piece)
                    await on_piece(piece, True)
    reply.text = "".join(text)
    reply.arguments = "".join(arguments) if called else None
    return reply


# ── one call, counted and observed ───────────────────────────────────────────────────────

SERIALIZED = {"lc": 1, "type": "not_implemented", "id": ["redraft", "llm", "direct"]}


async def call(
    target: Target,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    *,
    agent: str,
    mode: str | None = None,
    schema: type[BaseModel] | None = None,
    on_text: Callable[[str], None] | None = None,
    max_tokens: int | None = None,
) -> Reply:
    """One try of a call: sent, counted in the turn's usage, and reported to whoever observes
    LangChain runs. `config` is `agent_config`'s (run name, tags, metadata of the try);
    `on_text` gets the reply's text (or tool-call arguments) as it streams."""
    parent = run_config()
    tracker = current_tracker(parent)
    node = (parent.get("metadata") or {}).get("langgraph_node") if parent else None
    if tracker is not None and config["metadata"].get(RETRY_KEY):
        tracker.count_retry(agent)
    run = await _observe(parent, config, messages, target) if _observed(parent) else None
    tokens = run is not None and any(isinstance(h, _StreamingCallbackHandler) for h in run.handlers)
    stream = on_text is not None or tokens
    body = request_body(
        target, messages, mode=mode, schema=schema, stream=stream, max_tokens=max_tokens
    )
    try:
        if stream:
            reply = await _stream(target, body, _tap(on_text, run if tokens else None))
        else:
            reply = await _post(target, body)
    except asyncio.CancelledError:
        # Cut by its timeout (counted by `send`) or by the turn's deadline.
        if run is not None:
            await run.on_llm_error(asyncio.CancelledError())
        raise
    except Exception as exc:
        if tracker is not None:
            tracker.count_call(agent, node, 0, 0, failed=True)
        if run is not None:
            await run.on_llm_error(exc)
        if isinstance(exc, openai.APIError):
            same_as_langchain(exc)
        raise
    if tracker is not None:
        tracker.count_call(agent, node, reply.prompt_tokens, reply.completion_tokens)
    if run is not None:
        message = reply.message(target.model)
        usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
        await run.on_llm_end(
            LLMResult(
                generations=[[ChatGeneration(message=message)]],
                llm_output={"token_usage": usage, "model_name": target.model},
            )
        )
    return reply


def _observed(parent: dict[str, Any] | None) -> bool:
    """Whether anything but redraft's usage tracker listens to LangChain runs."""
    callbacks = parent.get("callbacks") if parent else None
    handlers = getattr(callbacks, "handlers", callbacks) or []
    return any(not isinstance(h, UsageTracker) for h in handlers) or bool(tracing_is_enabled())


async def _observe(
    parent: dict[str, Any] | None,
    config: RunnableConfig,
    messages: Sequence[BaseMessage],
    target: Target,
) -> AsyncCallbackManagerForLLMRun | None:
    """The chat-model run observers see for this call (usage is counted without it)."""
    parent = parent or {}
    params: dict[str, Any] = {
        "model": target.model,
        "model_name": target.model,
        "_type": "openai-chat",
    }
    if target.temperature is not None:
        params["temperature"] = target.temperature
    metadata = {
        **config["metadata"],
        "ls_provider": "openai",
        "ls_model_name": target.model,
        "ls_model_type": "chat",
    }
    if target.temperature is not None:
        metadata["ls_temperature"] = target.temperature
    manager = AsyncCallbackManager.configure(
        parent.get("callbacks"),
        None,
        False,
        [*parent.get("tags", []), *config["tags"]],
        None,
        {**parent.get("metadata", {}), **metadata},
    )
    for handler in list(manager.handlers):
        if isinstance(handler, UsageTracker):
            manager.remove_handler(handler)
    if not manager.handlers:
        return None
    runs = await manager.on_chat_model_start(
        SERIALIZED,
        [list(messages)],
        invocation_params=params,
        options={},
        name=config["run_name"],
        batch_size=1,
    )
    return runs[0]


def _tap(
    on_text: Callable[[str], None] | None, run: AsyncCallbackManagerForLLMRun | None
) -> Callable[[str, bool], Awaitable[None]]:
    """Each streamed piece to the caller and, as a token, to the run's observers."""

    async def tap(piece: str, is_arguments: bool) -> None:
        if on_text is not None:
            on_text(piece)
        if run is None:
            return
        if is_arguments:
            part = {"name": None, "args": piece, "id": None, "index": 0}
            message = AIMessageChunk(content="", tool_call_chunks=[part])
        else:
            message = AIMessageChunk(content=piece)
        await run.on_llm_new_token(piece, chunk=ChatGenerationChunk(message=message))

    return tap


def same_as_langchain(exc: openai.APIError) -> None:
    """Raise the error ChatOpenAI would raise for `exc` (e.g. `OpenAIAPIError` for a 5xx, a
    subclass of both the SDK's error and LangChain's `ModelAPIError`), so that code catching
    either, and every error message, is the same on both provider paths. Returns (the caller
    re-raises `exc` as is) when langchain-openai has no such mapping."""
    from langchain_openai.chat_models import base

    handle = getattr(base, "_handle_openai_api_error", None)
    if handle is not None:
        handle(exc)
