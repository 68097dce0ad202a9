"""The OpenAI Chat Completions wire format: requests in, completions and chunks out.

A chat completion request becomes a `RefineRequest`: `user` is the user id, and redraft's own
fields (`thread_id`, `persona`, `knowledge`, `draft`, ...: any `RefineRequest` field) come as
extra body fields (`extra_body=` in the OpenAI SDK), plus `strategy` for this turn only.
`model` is echoed back and sampling options are ignored: redraft drafts and refines with the
models it is configured with, so clients keep their settings and cannot change what it costs.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from redraft.config import Strategy
from redraft.server.errors import ApiError
from redraft.state import RefineResult

REDRAFT_MODEL = "redraft"

IGNORED_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "metadata",
        "store",
        "parallel_tool_calls",
        "tool_choice",
        "function_call",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "modalities",
        "audio",
        "prediction",
        "prompt_cache_key",
        "safety_identifier",
        "web_search_options",
    }
)


class WireMessage(BaseModel):
    """An OpenAI message; text content parts are joined into one string."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: Any = None

    @field_validator("content")
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise ValueError("only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise ValueError("a text content part needs a string `text`")
            texts.append(part["text"])
        return "\n".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The fields redraft reads; unknown fields are passed on to `RefineRequest`, which rejects
    what it does not know."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[WireMessage]
    user: str | None = None
    # Strict: "yes", "false" or 0 are refused rather than coerced. null is False, as OpenAI's.
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    strategy: Strategy | None = Field(None, description="Strategy for this turn only.")

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_PARAMS}
        return data

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("redraft returns one choice; n must be 1")
        return value

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tools are not supported: redraft refines text replies")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "text") != "text":
            raise ValueError("only the text response format is supported")
        return value

    def refine_request(self, user_id: str | None) -> dict[str, Any]:
        """The `RefineRequest` data of this completion request."""
        extra = dict(self.model_extra or {})
        if "user_id" in extra:
            # Only `user` names the user, so an API key bound to a user cannot be sidestepped.
            raise ApiError(400, "user_id: name the user with `user`", param="user_id")
        data: dict[str, Any] = {
            **extra,
            "messages": [m.model_dump() for m in self.messages],
        }
        if user_id is not None:
            data["user_id"] = user_id
        return data


def assistant_text(result: RefineResult) -> str:
    """What the assistant says: the refined reply, or, when the safety agent asks the user
    something first, its question (`redraft.question` is then set; the next user message in
    the thread answers it)."""
    return result.reply


def redraft_object(result: RefineResult) -> dict[str, Any]:
    """Everything that explains the turn: plan, critiques, changes, question, degradation,
    usage per agent and timings."""
    return result.model_dump(mode="json")


def usage_block(result: RefineResult) -> dict[str, int]:
    """OpenAI's usage block, counting every LLM call of the turn."""
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(result: RefineResult, model: str) -> dict[str, Any]:
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": assistant_text(result),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_block(result),
        "redraft": redraft_object(result),
    }


class ChunkWriter:
    """Server-sent events of one streamed completion, as OpenAI writes them."""

    def __init__(self, model: str) -> None:
        self.envelope = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**self.envelope, "choices": [choice], **extra})

    def usage(self, result: RefineResult) -> str:
        return sse({**self.envelope, "choices": [], "usage": usage_block(result)})


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


SSE_DONE = "data: [DONE]\n\n"
