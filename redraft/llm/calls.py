"""Chat models per role, and the calls redraft makes with them: structured calls (with one
parse retry and structured-output mode negotiation), streamed ones, plain ones; each through
`send` (a slot, a total timeout, retries). A model redraft builds by name is called the direct
way (`direct`); any other chat model through LangChain. Usage is counted in `usage`."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs
from langchain_core.utils.json import parse_json_markdown
from pydantic import BaseModel, SecretStr

from redraft.config import RefinerConfig, Role
from redraft.errors import RedraftError
from redraft.llm import direct
from redraft.llm.budget import Prompt, fit
from redraft.llm.endpoints import CallPolicy, endpoint_of, policy_of, set_policy
from redraft.llm.output import (
    PARSE_COUNTS,
    OutputNotParsedError,
    raw_text,
    read_output,
    wire_schema,
)
from redraft.llm.usage import UsageTracker, agent_config, current_tracker

__all__ = [
    "ModelNotConfiguredError",
    "Models",
    "OutputNotParsedError",
    "ProviderCallError",
    "UsageTracker",
    "call_message",
    "call_structured",
    "call_text",
    "current_tracker",
    "make_chat_model",
    "send",
    "stream_structured",
]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


class ModelNotConfiguredError(RedraftError, RuntimeError):
    """No provider is configured for a role that needs a model."""


class ProviderCallError(RedraftError, RuntimeError):
    """A provider call failed after its retries; the message names the endpoint."""


def _is_langchain_provider(name: str) -> bool:
    """`anthropic:claude-...` goes through init_chat_model; `llama3:8b` is an Ollama tag."""
    from langchain.chat_models.base import _BUILTIN_PROVIDERS

    prefix, sep, _ = name.partition(":")
    return bool(sep) and prefix in _BUILTIN_PROVIDERS


def make_chat_model(name: str, config: RefinerConfig) -> BaseChatModel:
    """Build the chat model `name` from the config (OpenAI-compatible unless prefixed).

    redraft retries and times out the calls itself (`send`), so that each try is counted and
    the timeout holds for the whole call, not per read; the client's own retries are off.
    An OpenAI-compatible model is called the direct way (`redraft.llm.direct`) by redraft's
    call helpers; the ChatOpenAI returned serves everything else (tools bound, user code).
    """
    policy = CallPolicy(
        timeout_s=config.timeout_s,
        retries=config.max_retries,
        concurrency=config.provider_concurrency,
        context_tokens=config.context_tokens,
        api_key=config.api_key.get_secret_value() if config.api_key else None,
    )
    model: BaseChatModel
    if _is_langchain_provider(name):
        from langchain.chat_models import init_chat_model

        model = init_chat_model(
            name, timeout=config.timeout_s, temperature=config.temperature, max_retries=0
        )
        set_policy(model, policy)
        return model
    if config.api_key is None and config.base_url is None:
        raise ModelNotConfiguredError(
            "no model provider configured: set OPENAI_API_KEY for OpenAI, or OPENAI_BASE_URL for "
            "an OpenAI-compatible server (Ollama, vLLM, llama.cpp); `redraft demo` runs offline"
        )
    import openai
    from langchain_openai import ChatOpenAI

    timeout = openai.Timeout(config.timeout_s, connect=min(CONNECT_TIMEOUT_S, config.timeout_s))
    model = ChatOpenAI(
        model_name=name,
        openai_api_key=config.api_key or SecretStr(NO_KEY),
        openai_api_base=config.base_url,
        request_timeout=timeout,
        stream_usage=True,
        temperature=config.temperature,
        max_retries=0,
        # Our own connection pool: langchain-openai's default async client is shared by the
        # whole process and bound to the first event loop that used it.
        http_async_client=openai.DefaultAsyncHttpxClient(timeout=timeout),
    )
    set_policy(model, policy)
    if not direct.chat_completions(model):
        return model
    key = model.openai_api_key
    target = direct.Target(
        base_url=model.openai_api_base,
        api_key=key.get_secret_value() if isinstance(key, SecretStr) else NO_KEY,
        model=model.model_name,
        temperature=model.temperature,  # as ChatOpenAI settled it for this model
        timeout_s=config.timeout_s,
        connect_s=min(CONNECT_TIMEOUT_S, config.timeout_s),
    )
    direct.register(model, target)
    return model


CONNECT_TIMEOUT_S = 5.0
NO_KEY = "not-needed"
"""The key sent to a server that asks for none (the SDK insists on one)."""


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
        key = (name, config.model_dump_json(include=MODEL_SETTINGS))
        if key not in self._built:
            self._built[key] = make_chat_model(name, config)
        return self._built[key]


MODEL_SETTINGS = {
    "api_key",
    "base_url",
    "temperature",
    "timeout_s",
    "max_retries",
    "provider_concurrency",
    "context_tokens",
}
"""The config fields a built chat model depends on."""


RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
MODE_REJECTED_STATUS = {400, 404, 415, 422, 500, 501}
"""Statuses with which a server refuses a structured-output mode (llama-cpp-python answers a
json_schema response format with 500)."""
CONTEXT_ERROR = re.compile(
    r"(?:maximum context length is|context window of|context size (?:is|of)|n_ctx(?:_slot)?\s*=?)"
    r"\s*(\d{3,7})",
    re.IGNORECASE,
)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException | None) -> float:
    """The wait a 429 or 503 asks for (`Retry-After` in seconds), at most a minute."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else 0.0
    except ValueError:  # an HTTP date: the backoff stands
        return 0.0


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, TimeoutError | openai.APIConnectionError):
        return True
    status = _status(exc)
    return status is not None and status in RETRYABLE_STATUS


async def send(
    model: BaseChatModel,
    call: Callable[[RunnableConfig], Awaitable[R]],
    *,
    agent: str,
    retry: Callable[[BaseException], bool] = _retryable,
) -> R:
    """One provider call through the model's policy: a slot among the endpoint's calls in
    flight, a total timeout counted from when the call is sent, retries with backoff.

    `call(config)` makes the call with the run config to pass on (each try is its own run,
    so usage counts every try). Errors that are not retried propagate as they are.
    """
    endpoint, policy = endpoint_of(model), policy_of(model)
    await endpoint.probe(policy)
    tries = policy.retries + 1
    error: BaseException | None = None
    for attempt in range(tries):
        if attempt:
            backoff = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())
            await asyncio.sleep(max(backoff, _retry_after(error)))
        slot = endpoint.slot(policy)
        try:
            if slot is not None:
                await slot.acquire()
            try:
                if policy.timeout_s is None:
                    return await call(agent_config(agent, attempt))
                async with asyncio.timeout(policy.timeout_s):
                    return await call(agent_config(agent, attempt))
            finally:
                if slot is not None:
                    slot.release()
        except TimeoutError:
            error = TimeoutError(f"no complete reply within {policy.timeout_s:g} s")
            # The cancelled call's own callbacks may come late or never: counted here.
            tracker = current_tracker()
            if tracker is not None:
                tracker.count_cut(agent)
        except Exception as exc:
            if not retry(exc):
                raise
            error = exc
    assert error is not None
    if _status(error) is not None:
        raise error  # the server answered: its own error says what went wrong
    raise ProviderCallError(
        f"{agent}: {endpoint.name}: {type(error).__name__}: {error} "
        f"({tries} {'try' if tries == 1 else 'tries'})"
    ) from error


def structured_runnable(model: BaseChatModel, schema: type[BaseModel], method: str) -> Runnable:
    """`model.with_structured_output` for `schema`, built once per model: building it converts
    the schema again each time (about a millisecond of CPU per call, see BENCHMARKS.md).

    The schema goes as a JSON-schema dict, never the class: with the class, langchain-openai
    has the openai SDK validate the reply inside the call, which loses the raw output (so its
    tokens go uncounted and nothing can be mended). `read_output` validates instead.
    """
    # The entry holds the model, so no other model can take its id while it is cached.
    key = (id(model), schema, method)
    cached = _structured.get(key)
    if cached is None:
        runnable = model.with_structured_output(
            wire_schema(schema), method=method, include_raw=True
        )
        if len(_structured) >= STRUCTURED_CACHE:
            _structured.clear()
        cached = _structured[key] = (model, runnable)
    return cached[1]


_structured: dict[tuple[int, type, str], tuple[BaseChatModel, Runnable]] = {}
STRUCTURED_CACHE = 256


def with_schema_in_prompt(
    messages: list[BaseMessage], schema: type[BaseModel]
) -> list[BaseMessage]:
    """json_mode asks only for JSON: the schema itself goes at the end of the last message."""
    spec = json.dumps(wire_schema(schema), separators=(",", ":"))
    note = f"\n\nAnswer with one JSON object, nothing else, that follows this JSON schema:\n{spec}"
    last = messages[-1]
    return [*messages[:-1], last.model_copy(update={"content": f"{last.text}{note}"})]


async def call_structured(
    model: BaseChatModel,
    schema: type[T],
    prompt: Prompt | Sequence[BaseMessage],
    *,
    agent: str,
    method: str,
    attempts: int = 2,
) -> T:
    """One structured call; an output that does not parse is asked for again once.

    `method` auto negotiates the endpoint's structured-output mode (see `endpoints`). The
    prompt is fitted to the context window first. Provider errors propagate after `send`'s
    retries; the caller decides what to degrade.
    """
    endpoint, policy = endpoint_of(model), policy_of(model)
    await endpoint.probe(policy)
    error: BaseException | None = None
    for mode in endpoint.candidates(method):
        negotiating = method == "auto" and endpoint.mode is None
        try:
            output = await _structured_tries(
                model,
                schema,
                prompt,
                agent=agent,
                mode=mode,
                attempts=attempts,
                negotiating=negotiating,
            )
        except OutputNotParsedError as exc:
            if not negotiating:
                raise
            endpoint.reject(mode, f"output did not parse ({exc})")
            error = exc
            continue
        except Exception as exc:
            cause = (exc.__cause__ or exc) if isinstance(exc, ProviderCallError) else exc
            if not negotiating or not _refuses_mode(cause):
                raise
            endpoint.reject(mode, f"HTTP {_status(cause)}: {str(cause)[:200]}")
            error = exc
            continue
        if method == "auto":
            endpoint.settle(mode)
        return output
    raise OutputNotParsedError(
        f"{agent}: no structured-output mode worked with {endpoint.name}: "
        + "; ".join(f"{m}: {r}" for m, r in endpoint.rejected.items())
    ) from error


async def _structured_tries(
    model: BaseChatModel,
    schema: type[T],
    prompt: Prompt | Sequence[BaseMessage],
    *,
    agent: str,
    mode: str,
    attempts: int,
    negotiating: bool,
) -> T:
    endpoint, policy = endpoint_of(model), policy_of(model)
    target = direct.target_of(model)
    runnable = structured_runnable(model, schema, mode) if target is None else None
    in_prompt = schema if mode != "json_schema" else None  # tools and the note take room
    messages = fit(prompt, endpoint.prompt_budget(policy), in_prompt, agent=agent)
    if mode == "json_mode":
        messages = with_schema_in_prompt(messages, schema)
    # While a mode is being tried, a refusal is an answer: not retried, the next mode is.
    retry = _retryable if not negotiating else _retryable_not_refused
    error: BaseException | None = None
    for _ in range(attempts):
        try:
            if target is not None:
                call = partial(
                    direct.call,
                    target,
                    messages,
                    agent=agent,
                    mode=mode,
                    schema=schema,
                    max_tokens=endpoint.output_cap(policy),
                )
                reply = await send(model, call, agent=agent, retry=retry)
                raw = reply.raw
            else:
                assert runnable is not None
                invoke = partial(runnable.ainvoke, messages)
                out = await send(model, invoke, agent=agent, retry=retry)
                raw = raw_text(out["raw"])
        except Exception as exc:
            learned = _context_from_error(exc)
            if learned is None or learned >= endpoint.context_tokens(policy):
                raise
            # The server told us its real context window: fit to it and try again.
            endpoint.reported_context = learned
            messages = fit(prompt, endpoint.prompt_budget(policy), in_prompt, agent=agent)
            if mode == "json_mode":
                messages = with_schema_in_prompt(messages, schema)
            continue
        try:
            parsed = read_output(schema, raw)
        except ValueError as exc:
            PARSE_COUNTS.record(agent, mode, parsed=False)
            error = exc
        else:
            PARSE_COUNTS.record(agent, mode, parsed=True)
            return parsed
    raise OutputNotParsedError(f"{agent}: output did not parse after {attempts} tries: {error}")


def _refuses_mode(exc: BaseException) -> bool:
    """An HTTP error about the structured-output request itself (its response format, tools
    or schema), not about the call in general."""
    return _status(exc) in MODE_REJECTED_STATUS and bool(MODE_WORDS.search(str(exc)))


MODE_WORDS = re.compile(r"response_format|json_schema|json_object|schema|tool|function", re.I)


def _retryable_not_refused(exc: BaseException) -> bool:
    return _retryable(exc) and not _refuses_mode(exc)


def _context_from_error(exc: BaseException) -> int | None:
    """The context window a server names when it refuses a prompt as too long."""
    cause = (exc.__cause__ or exc) if isinstance(exc, ProviderCallError) else exc
    if _status(cause) != 400:
        return None
    match = CONTEXT_ERROR.search(str(cause))
    return int(match.group(1)) if match else None


async def stream_structured(
    model: BaseChatModel,
    schema: type[T],
    prompt: Prompt | Sequence[BaseMessage],
    *,
    agent: str,
    method: str,
    field: str,
    on_delta: Callable[[str], None],
) -> T:
    """A structured call streamed so that one string field reaches `on_delta` as it grows.

    Used for the editor's reply, so callers can show the refined reply while it is written.
    Falls back to `call_structured` (with its parse retry) when the stream does not parse, and
    while the endpoint's structured-output mode is still being negotiated.
    """
    endpoint, policy = endpoint_of(model), policy_of(model)
    await endpoint.probe(policy)
    modes = endpoint.candidates(method)
    if method == "auto" and endpoint.mode is None:
        return await call_structured(model, schema, prompt, agent=agent, method=method)
    mode = modes[0]
    messages = fit(
        prompt,
        endpoint.prompt_budget(policy),
        schema if mode != "json_schema" else None,
        agent=agent,
    )
    if mode == "json_mode":
        messages = with_schema_in_prompt(messages, schema)
    # Partial parsing also "parses" an output that was cut short: the raw output must be whole.
    end = StreamEnd()
    sent = ""

    def grown(value: Any) -> None:
        nonlocal sent
        if isinstance(value, str) and value.startswith(sent) and len(value) > len(sent):
            on_delta(value[len(sent) :])
            sent = value

    target = direct.target_of(model)
    if target is not None:

        async def stream(config: RunnableConfig) -> None:
            text = ""

            def on_text(piece: str) -> None:
                nonlocal text
                text += piece
                grown(_partial_field(text, field))

            reply = await direct.call(
                target,
                messages,
                config,
                agent=agent,
                mode=mode,
                schema=schema,
                on_text=on_text,
                max_tokens=endpoint.output_cap(policy),
            )
            end.raw = reply.raw

    else:
        runnable = model.with_structured_output(wire_schema(schema), method=mode)

        async def stream(config: RunnableConfig) -> None:
            run_config = merge_configs(ensure_config(), config, {"callbacks": [end]})
            async for partial in runnable.astream(messages, config=run_config):
                grown(
                    partial.get(field)
                    if isinstance(partial, dict)
                    else getattr(partial, field, None)
                )

    try:
        # Once part of the reply has been shown, a retry would show it twice: no retries.
        await send(model, stream, agent=agent, retry=lambda _: not sent)
        if end.raw is None:
            raise ValueError("the stream ended without an output")
        final = read_output(schema, end.raw)
    except ValueError:
        if end.raw is not None:
            PARSE_COUNTS.record(agent, mode, parsed=False)
        if sent:
            raise OutputNotParsedError(f"{agent}: streamed output did not parse") from None
        return await call_structured(model, schema, prompt, agent=agent, method=method)
    PARSE_COUNTS.record(agent, mode, parsed=True)
    if getattr(final, field) != sent:
        if not getattr(final, field).startswith(sent):
            raise OutputNotParsedError(f"{agent}: streamed {field} changed while streaming")
        on_delta(getattr(final, field)[len(sent) :])
    return final


def _partial_field(text: str, field: str) -> Any:
    """`field` of the JSON object written so far (closed where it is cut, as LangChain's
    partial JSON parser reads it); None while it cannot be read."""
    try:
        value = parse_json_markdown(text)
    except ValueError:
        return None
    return value.get(field) if isinstance(value, dict) else None


class StreamEnd(AsyncCallbackHandler):
    """The raw output a streamed call ended with: its text, or its tool call's arguments."""

    def __init__(self) -> None:
        self.raw: str | dict[str, Any] | None = None

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        message = getattr(next(iter(response.generations[0]), None), "message", None)
        if message is not None:
            calls = getattr(message, "tool_call_chunks", None)
            self.raw = calls[0]["args"] if calls else message.text


async def call_message(
    model: BaseChatModel,
    prompt: Prompt | Sequence[BaseMessage],
    *,
    agent: str,
    runnable: Runnable | None = None,
) -> AIMessage:
    """A plain call (no schema), fitted to the context window, through `send`; `runnable` is
    `model` with something bound (tools), when it is not the model itself."""
    endpoint, policy = endpoint_of(model), policy_of(model)
    await endpoint.probe(policy)
    messages = fit(prompt, endpoint.prompt_budget(policy), agent=agent)
    target = direct.target_of(model) if runnable is None or runnable is model else None
    if target is not None:
        cap = endpoint.output_cap(policy)
        reply = await send(
            model,
            lambda config: direct.call(target, messages, config, agent=agent, max_tokens=cap),
            agent=agent,
        )
        return reply.message(target.model)
    chat = runnable or model
    message = await send(model, lambda config: chat.ainvoke(messages, config=config), agent=agent)
    return message if isinstance(message, AIMessage) else AIMessage(content=message.content)


async def call_text(
    model: BaseChatModel, prompt: Prompt | Sequence[BaseMessage], *, agent: str
) -> str:
    message = await call_message(model, prompt, agent=agent)
    return str(message.text).strip()
