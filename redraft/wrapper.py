"""`RefinedChatModel`: a LangChain chat model whose replies are refined by redraft.

An existing LangChain app swaps it in for its chat model in one line::

    llm = RefinedChatModel(ChatOpenAI(model="gpt-4o-mini"))

The base model writes the draft, and (unless `models` names others per role) also plans,
critiques and edits, as in MARA where one LLM plays every role. `RefineRequest` fields
(`user_id`, `thread_id`, `persona`, `knowledge`) go in per call: `llm.invoke(msgs, persona=[...])`
or `llm.bind(thread_id="t1")`. The turn's `RefineResult` is in the reply's
`response_metadata["redraft"]`.

Tool-using agents: `llm.bind_tools(tools)` offers the tools to the base model; a draft that calls
a tool comes back as an `AIMessage` with those `tool_calls`, untouched, and the turn after the
`ToolMessage`s is drafted with them and refined.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from redraft.config import RefinerConfig
from redraft.refiner import Refiner, ReplyText, ReplyToken, TurnDone
from redraft.state import RefineResult

T = TypeVar("T")

# LangChain message types → OpenAI roles; any other type fails validation, naming the message.
_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
_END = object()


class RefinedChatModel(BaseChatModel):
    """A chat model that drafts with `base_model` and returns redraft's refined reply.

    Sync and async calls, `batch`/`abatch` and streaming (`stream`/`astream` send the final
    reply as it is written) work in any mix, from any thread or event loop: every turn runs on
    the wrapper's own event loop thread, so the Refiner's connections (threads, personas, the
    base model's async client) are only ever used on the loop that opened them. `stop` and
    sampling options are not used.
    """

    base_model: BaseChatModel
    config: RefinerConfig = Field(default_factory=RefinerConfig)
    models: dict[str, BaseChatModel] = Field(
        default_factory=dict,
        description="Models per role (planner, critic, editor, ...); the base model otherwise.",
    )
    _refiner: Refiner | None = PrivateAttr(default=None)
    _loop: asyncio.AbstractEventLoop | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self, base_model: BaseChatModel, config: RefinerConfig | None = None, **kwargs: Any
    ) -> None:
        # pydantic's mypy plugin types BaseChatModel's __init__ with BaseChatModel's fields
        # only; these are this subclass's fields, which pydantic validates.
        super().__init__(  # type: ignore[call-arg]
            base_model=base_model, config=config or RefinerConfig(), **kwargs
        )

    @property
    def _llm_type(self) -> str:
        return "redraft"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"base_model": self.base_model._llm_type, "strategy": self.config.strategy}

    @property
    def refiner(self) -> Refiner:
        """The Refiner behind this model: one per wrapper, made on first use (under a lock,
        so concurrent first calls share it)."""
        return self._start()[0]

    def _start(self) -> tuple[Refiner, asyncio.AbstractEventLoop]:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=_run_loop, args=(loop,), name="redraft-wrapper", daemon=True
                ).start()
                self._loop = loop
            if self._refiner is None:
                self._refiner = Refiner(
                    self.config, model={"default": self.base_model, **self.models}
                )
            return self._refiner, self._loop

    def _submit(
        self, work: Callable[[Refiner], Coroutine[Any, Any, T]]
    ) -> concurrent.futures.Future[T]:
        refiner, loop = self._start()
        if _running_loop() is loop:
            raise RuntimeError("RefinedChatModel was called from inside its own event loop")
        return asyncio.run_coroutine_threadsafe(work(refiner), loop)

    def close(self) -> None:
        """Finish background memory work, release storage and stop the wrapper's loop thread.
        A later call starts afresh."""
        with self._lock:
            refiner, loop = self._refiner, self._loop
            self._refiner = self._loop = None
        if loop is None:
            return
        if refiner is not None:
            asyncio.run_coroutine_threadsafe(refiner.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer `tools` to the base model when it drafts; a draft that calls one is returned
        as it is. `tool_choice`: "auto", "none", "required" (or "any", or True), or a tool name."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = _tool_choice(tool_choice)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = _request(messages, kwargs)
        result = self._submit(lambda refiner: refiner.arefine(request)).result()
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = _request(messages, kwargs)
        future = self._submit(lambda refiner: refiner.arefine(request))
        result = await asyncio.wrap_future(future)  # cancelling the caller cancels the turn
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = _request(messages, kwargs)
        events: queue.Queue[Any] = queue.Queue()
        future = self._submit(lambda refiner: _pump(refiner, request, events.put))
        try:
            for chunk in _chunks(iter(events.get, _END)):
                if run_manager:
                    run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            future.result()  # a failed turn raises here
        finally:
            future.cancel()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = _request(messages, kwargs)
        here = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        future = self._submit(
            lambda refiner: _pump(
                refiner, request, lambda item: here.call_soon_threadsafe(events.put_nowait, item)
            )
        )
        try:
            done = ReplyText()
            while (event := await events.get()) is not _END:
                for chunk in _chunks([event], done):
                    if run_manager:
                        await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                    yield chunk
            await asyncio.wrap_future(future)  # a failed turn raises here
        finally:
            future.cancel()


async def _pump(refiner: Refiner, request: dict[str, Any], put: Callable[[Any], Any]) -> None:
    """Run one streamed turn on the wrapper's loop, handing each event to the caller's side;
    the end (or the failure, raised by the future) is marked with `_END`."""
    try:
        async for event in refiner.astream(request):
            put(event)
    finally:
        put(_END)


def _chunks(events: Any, text: ReplyText | None = None) -> Iterator[ChatGenerationChunk]:
    """LangChain chunks of a turn's events: the reply's text as written, then the last chunk
    with the result (and the draft's tool calls, when it made any)."""
    text = text or ReplyText()
    for event in events:
        if isinstance(event, ReplyToken) and (delta := text.add(event)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
        elif isinstance(event, TurnDone):
            result = event.result
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=text.finish(result.reply),
                    tool_call_chunks=[
                        tool_call_chunk(
                            name=c.function.name, args=c.function.arguments, id=c.id, index=i
                        )
                        for i, c in enumerate(result.tool_calls or [])
                    ],
                    response_metadata=_metadata(result),
                    usage_metadata=_usage(result),
                    chunk_position="last",
                )
            )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
    loop.close()


def _tool_choice(choice: str | dict[str, Any] | bool) -> str | dict[str, Any]:
    """LangChain's tool_choice spellings, as OpenAI's (as ChatOpenAI.bind_tools reads them)."""
    if choice is True or choice == "any":
        return "required"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    if choice is False:
        return "none"
    return choice


def _request(messages: list[BaseMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The RefineRequest of a call: the messages, plus per-call fields (`thread_id`, ...).
    LangChain's own tracing kwargs (`ls_*`) are not request fields."""
    fields = {k: v for k, v in kwargs.items() if not k.startswith("ls_")}
    return {"messages": [_wire(m) for m in messages], **fields}


def _wire(message: BaseMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "role": _ROLES.get(message.type, message.type),
        # content parts (images) as they came; plain text otherwise
        "content": message.content if isinstance(message.content, list) else message.text,
    }
    if message.type == "tool":
        wire["tool_call_id"] = getattr(message, "tool_call_id", None)
    calls = [
        *(
            (c.get("id"), c["name"], json.dumps(c["args"]))
            for c in getattr(message, "tool_calls", [])
        ),
        *(
            (c.get("id"), c.get("name"), c.get("args") or "{}")
            for c in getattr(message, "invalid_tool_calls", [])
        ),
    ]
    if message.type == "ai" and calls:
        wire["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ]
    return wire


def _metadata(result: RefineResult) -> dict[str, Any]:
    return {"redraft": result.model_dump(mode="json")}


def _usage(result: RefineResult) -> UsageMetadata:
    usage = result.usage
    return UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def _message(result: RefineResult) -> AIMessage:
    calls, invalid = [], []
    for call in result.tool_calls or []:
        try:
            args = json.loads(call.function.arguments)
        except ValueError:
            args = None
        if isinstance(args, dict):
            calls.append(tool_call(name=call.function.name, args=args, id=call.id))
        else:
            invalid.append(
                invalid_tool_call(
                    name=call.function.name, args=call.function.arguments, id=call.id, error=None
                )
            )
    return AIMessage(
        content=result.reply,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        response_metadata=_metadata(result),
        usage_metadata=_usage(result),
    )
