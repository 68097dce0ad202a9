"""`RefinedChatModel`: a LangChain chat model whose replies are refined by redraft.

An existing LangChain app swaps it in for its chat model in one line::

    llm = RefinedChatModel(ChatOpenAI(model="gpt-4o-mini"))

The base model writes the draft, and (unless `models` names others per role) also plans,
critiques and edits, as in MARA where one LLM plays every role. `RefineRequest` fields
(`user_id`, `thread_id`, `persona`, `knowledge`) go in per call: `llm.invoke(msgs, persona=[...])`
or `llm.bind(thread_id="t1")`. The turn's `RefineResult` is in the reply's
`response_metadata["redraft"]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from redraft.config import RefinerConfig
from redraft.refiner import Refiner, ReplyText, ReplyToken, TurnDone
from redraft.state import RefineResult

# LangChain message types → OpenAI roles; any other type fails validation, naming the message.
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class RefinedChatModel(BaseChatModel):
    """A chat model that drafts with `base_model` and returns redraft's refined reply.

    Sync (`invoke`), async (`ainvoke`) and streaming (`astream` streams the final reply as it
    is written; sync `stream` yields it in one chunk). `stop` and sampling options are not used.
    """

    base_model: BaseChatModel
    config: RefinerConfig = Field(default_factory=RefinerConfig)
    models: dict[str, BaseChatModel] = Field(
        default_factory=dict,
        description="Models per role (planner, critic, editor, ...); the base model otherwise.",
    )
    _refiner: Refiner | None = PrivateAttr(default=None)

    def __init__(
        self, base_model: BaseChatModel, config: RefinerConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(base_model=base_model, config=config or RefinerConfig(), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "redraft"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"base_model": self.base_model._llm_type, "strategy": self.config.strategy}

    @property
    def refiner(self) -> Refiner:
        """The Refiner behind this model (made on first use)."""
        if self._refiner is None:
            self._refiner = Refiner(self.config, model={"default": self.base_model, **self.models})
        return self._refiner

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = self.refiner.refine(_request(messages, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await self.refiner.arefine(_request(messages, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        text = ReplyText()
        async for event in self.refiner.astream(_request(messages, kwargs)):
            if isinstance(event, ReplyToken) and (delta := text.add(event)):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
            elif isinstance(event, TurnDone):
                result = event.result
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=text.finish(result.reply),
                        response_metadata=_metadata(result),
                        usage_metadata=_usage(result),
                        chunk_position="last",
                    )
                )
            else:
                continue
            if run_manager:
                await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk


def _request(messages: list[BaseMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The RefineRequest of a call: the messages, plus per-call fields (`thread_id`, ...)."""
    conversation = [{"role": _ROLES.get(m.type, m.type), "content": m.text} for m in messages]
    return {"messages": conversation, **kwargs}


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
    return AIMessage(
        content=result.reply, response_metadata=_metadata(result), usage_metadata=_usage(result)
    )
