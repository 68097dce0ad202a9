"""Chat models per role, structured calls with one parse retry, and usage accounting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import ensure_config, merge_configs
from langchain_core.utils.json import parse_json_markdown
from pydantic import BaseModel

from redraft.config import RefinerConfig, Role
from redraft.state import AgentUsage, Usage

T = TypeVar("T", bound=BaseModel)

AGENT_KEY = "redraft_agent"


class ModelNotConfiguredError(RuntimeError):
    """No provider is configured for a role that needs a model."""


def _is_langchain_provider(name: str) -> bool:
    """`anthropic:claude-...` goes through init_chat_model; `llama3:8b` is an Ollama tag."""
    from langchain.chat_models.base import _BUILTIN_PROVIDERS

    prefix, sep, _ = name.partition(":")
    return bool(sep) and prefix in _BUILTIN_PROVIDERS


def make_chat_model(name: str, config: RefinerConfig) -> BaseChatModel:
    """Build the chat model `name` from the config (OpenAI-compatible unless prefixed)."""
    common = {"temperature": config.temperature, "max_retries": config.max_retries}
    if _is_langchain_provider(name):
        from langchain.chat_models import init_chat_model

        return init_chat_model(name, timeout=config.timeout_s, **common)
    if config.api_key is None and config.base_url is None:
        raise ModelNotConfiguredError(
            "no model provider configured: set OPENAI_API_KEY for OpenAI, or OPENAI_BASE_URL for "
            "an OpenAI-compatible server (Ollama, vLLM, llama.cpp); `redraft demo` runs offline"
        )
    import openai
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=name,
        api_key=config.api_key.get_secret_value() if config.api_key else "not-needed",
        base_url=config.base_url,
        timeout=config.timeout_s,
        stream_usage=True,
        # Our own connection pool: langchain-openai's default async client is shared by the
        # whole process and bound to the first event loop that used it.
        http_async_client=openai.DefaultAsyncHttpxClient(timeout=config.timeout_s),
        **common,
    )


class Models:
    """Resolves the chat model of each role, once per model name.

    `override` (one model for every role, or a mapping role → model) wins over the config;
    tests and offline demos pass a ScriptedChatModel here.
    """

    def __init__(self, override: BaseChatModel | Mapping[str, BaseChatModel] | None = None):
        self._override = override
        self._built: dict[tuple[str, str], BaseChatModel] = {}

    def for_role(self, role: Role, config: RefinerConfig) -> BaseChatModel:
        if isinstance(self._override, BaseChatModel):
            return self._override
        if self._override is not None:
            chosen = self._override.get(role) or self._override.get("default")
            if chosen is not None:
                return chosen
        name = config.model_for(role)
        key = (name, config.model_dump_json(include={"api_key", "base_url", "temperature"}))
        if key not in self._built:
            self._built[key] = make_chat_model(name, config)
        return self._built[key]


def agent_config(agent: str) -> dict[str, Any]:
    """Run config that names the agent, for usage accounting, tracing and logs."""
    return {"metadata": {AGENT_KEY: agent}, "run_name": agent, "tags": [f"agent:{agent}"]}


_structured: dict[tuple[int, type, str, bool], tuple[BaseChatModel, Runnable]] = {}
STRUCTURED_CACHE = 256


def structured_runnable(
    model: BaseChatModel, schema: type[BaseModel], method: str, *, streamed: bool = False
) -> Runnable:
    """`model.with_structured_output` for `schema`, built once per model: building it converts
    the schema again each time (about a millisecond of CPU per call, see BENCHMARKS.md).

    `streamed`: with the schema as a JSON-schema dict (not the class), which selects LangChain's
    partial-JSON parsers, which stream; otherwise with the raw output, for the parse retry.
    """
    # The entry holds the model, so no other model can take its id while it is cached.
    key = (id(model), schema, method, streamed)
    cached = _structured.get(key)
    if cached is None:
        if streamed:
            runnable = model.with_structured_output(schema.model_json_schema(), method=method)
        else:
            runnable = model.with_structured_output(schema, method=method, include_raw=True)
        if len(_structured) >= STRUCTURED_CACHE:
            _structured.clear()
        cached = _structured[key] = (model, runnable)
    return cached[1]


async def call_structured(
    model: BaseChatModel,
    schema: type[T],
    messages: Sequence[BaseMessage],
    *,
    agent: str,
    method: str,
    attempts: int = 2,
) -> T:
    """One structured call; an output that does not parse is asked for again once.

    Provider errors propagate (the client already retried them with backoff); the caller
    decides what to degrade.
    """
    runnable = structured_runnable(model, schema, method)
    error: Exception | None = None
    for _ in range(attempts):
        try:
            out = await runnable.ainvoke(list(messages), config=agent_config(agent))
            parsed = out.get("parsed")
            if isinstance(parsed, schema):
                return parsed
            if parsed is not None:
                return schema.model_validate(parsed)
            error = out.get("parsing_error") or ValueError("no structured output in the reply")
        except ValueError as exc:  # JSON or schema errors, raised by some clients' parsers
            error = exc
    raise OutputNotParsedError(f"{agent}: output did not parse after {attempts} tries: {error}")


async def stream_structured(
    model: BaseChatModel,
    schema: type[T],
    messages: Sequence[BaseMessage],
    *,
    agent: str,
    method: str,
    field: str,
    on_delta: Callable[[str], None],
) -> T:
    """A structured call streamed so that one string field reaches `on_delta` as it grows.

    Used for the editor's reply, so callers can show the refined reply while it is written.
    Falls back to `call_structured` (with its parse retry) when the stream does not parse.
    """
    runnable = structured_runnable(model, schema, method, streamed=True)
    # Partial parsing also "parses" an output that was cut short: the raw output must be whole.
    end = StreamEnd()
    config = merge_configs(ensure_config(), agent_config(agent), {"callbacks": [end]})
    sent = ""
    last: Any = None
    try:
        async for partial in runnable.astream(list(messages), config=config):
            last = partial
            value = (
                partial.get(field) if isinstance(partial, dict) else getattr(partial, field, None)
            )
            if isinstance(value, str) and value.startswith(sent) and len(value) > len(sent):
                on_delta(value[len(sent) :])
                sent = value
        if end.raw is not None:
            parse_json_markdown(end.raw, parser=json.loads)  # ValueError when cut short
        final = last if isinstance(last, schema) else schema.model_validate(last)
    except ValueError:
        if sent:
            raise OutputNotParsedError(f"{agent}: streamed output did not parse") from None
        return await call_structured(model, schema, messages, agent=agent, method=method)
    if getattr(final, field) != sent:
        if not getattr(final, field).startswith(sent):
            raise OutputNotParsedError(f"{agent}: streamed {field} changed while streaming")
        on_delta(getattr(final, field)[len(sent) :])
    return final


class OutputNotParsedError(ValueError):
    """A model kept returning output that does not fit the schema."""


class StreamEnd(AsyncCallbackHandler):
    """The raw output a streamed call ended with: its text, or its tool call's arguments."""

    def __init__(self) -> None:
        self.raw: str | None = None

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        message = getattr(next(iter(response.generations[0]), None), "message", None)
        if message is not None:
            calls = getattr(message, "tool_call_chunks", None)
            self.raw = calls[0]["args"] if calls else message.text


async def call_text(model: BaseChatModel, messages: Sequence[BaseMessage], *, agent: str) -> str:
    message = await model.ainvoke(list(messages), config=agent_config(agent))
    return str(message.text).strip()


class UsageTracker(AsyncCallbackHandler):
    """Counts calls and tokens per agent, and when each call ran.

    Attached to one turn's run config; agents are recognised by `agent_config`'s metadata.
    """

    def __init__(self) -> None:
        self._running: dict[UUID, tuple[str, str | None, float]] = {}
        self.usage = Usage()
        self.spans: list[tuple[str, float, float]] = []
        self.tokens_by_node: dict[str, int] = {}

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        agent = metadata.get(AGENT_KEY)
        if agent:
            node = metadata.get("langgraph_node")
            self._running[run_id] = (agent, node, time.perf_counter())

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        prompt, completion = _token_counts(response)
        self._finish(run_id, prompt, completion)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, 0, 0)

    def _finish(self, run_id: UUID, prompt: int, completion: int) -> None:
        started = self._running.pop(run_id, None)
        if started is None:
            return
        agent, node, t0 = started
        self.spans.append((agent, t0, time.perf_counter()))
        if node:
            self.tokens_by_node[node] = self.tokens_by_node.get(node, 0) + prompt + completion
        per_agent = self.usage.by_agent.setdefault(agent, AgentUsage())
        per_agent.calls += 1
        per_agent.prompt_tokens += prompt
        per_agent.completion_tokens += completion
        self.usage.llm_calls += 1
        self.usage.prompt_tokens += prompt
        self.usage.completion_tokens += completion


def current_tracker() -> UsageTracker | None:
    """The UsageTracker among the running graph's callbacks, if any (for per-node logs)."""
    from langgraph.config import get_config

    try:
        callbacks = get_config().get("callbacks")
    except RuntimeError:  # not inside a graph run
        return None
    handlers = getattr(callbacks, "handlers", callbacks) or []
    return next((h for h in handlers if isinstance(h, UsageTracker)), None)


def _token_counts(response: LLMResult) -> tuple[int, int]:
    for generations in response.generations:
        for generation in generations:
            meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if meta:
                return meta.get("input_tokens", 0), meta.get("output_tokens", 0)
    usage = (response.llm_output or {}).get("token_usage") or {}
    return usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
