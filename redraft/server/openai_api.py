"""The OpenAI Chat Completions wire format: requests in, completions and chunks out.

A chat completion request becomes a `RefineRequest`: `user` is the user id, and redraft's own
fields (`thread_id`, `persona`, `knowledge`, `draft`, ...: any `RefineRequest` field) come as
extra body fields (`extra_body=` in the OpenAI SDK), plus `strategy` for this turn only.
`model` is echoed back and sampling options are ignored: redraft drafts and refines with the
models it is configured with, so clients keep their settings and cannot change what it costs.

Tool-using agents: `tools`, `tool_choice` and `parallel_tool_calls` go to the responding model;
a draft that calls a tool comes back as it is (`tool_calls`, `finish_reason: "tool_calls"`),
and the turn after the tool results is drafted with them and refined. Fields redraft cannot
honour (`n` > 1, `logprobs`, `audio`, legacy `functions`) are refused, naming the field.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from redraft.config import Strategy
from redraft.server.errors import ApiError
from redraft.state import DraftReply, RefineResult, ToolCall

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
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "prediction",
        "prompt_cache_key",
        "safety_identifier",
        "web_search_options",
    }
)


class WireMessage(BaseModel):
    """An OpenAI message, passed on to `redraft.state.Message` (which checks it): content as a
    string, content parts (images too), or null beside `tool_calls`; `tool` results."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: Any = Field(None, description="A string, a list of content parts, or null.")
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | list):
            raise ValueError("content must be a string, a list of content parts, or null")
        return value

    def refine_message(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"content"}) | {"content": self.content}


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
    tools: list[dict[str, Any]] | None = Field(
        None, description="Offered to the responding model; a tool call comes back untouched."
    )
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[Any] | None = Field(None, description="Refused: use `tools`.")
    function_call: Any = Field(None, description="Refused: use `tool_choice`.")
    logprobs: StrictBool | None = Field(None, description="Refused when true.")
    top_logprobs: int | None = Field(None, description="Refused when set.")
    audio: dict[str, Any] | None = Field(None, description="Refused: redraft replies in text.")
    modalities: list[str] | None = Field(None, description='Only ["text"].')
    response_format: dict[str, Any] | None = None
    strategy: Strategy | None = Field(None, description="Strategy for this turn only.")
    thread_id: str | None = Field(
        None, description="Keep the conversation in this thread (per user)."
    )
    persona: list[str] | None = Field(None, description="Inline persona facts.")
    knowledge: list[str] | None = Field(None, description="Evidence passages.")
    draft: str | DraftReply | None = Field(
        None, description="A reply to refine instead of drafting one (a tool call: untouched)."
    )

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

    @field_validator("functions", "function_call")
    @classmethod
    def _no_functions(cls, value: Any) -> Any:
        if value:
            raise ValueError("the legacy functions API is not supported: use `tools`")
        return value

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: Any) -> Any:
        if value:
            raise ValueError("logprobs are not returned: the reply is rewritten after sampling")
        return value

    @field_validator("audio")
    @classmethod
    def _no_audio(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("audio output is not supported: redraft replies in text")
        return value

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, value: list[str] | None) -> list[str] | None:
        if value and set(value) != {"text"}:
            raise ValueError("only the text modality is supported")
        return value

    def refine_request(self, user_id: str | None) -> dict[str, Any]:
        """The `RefineRequest` data of this completion request."""
        extra = dict(self.model_extra or {})
        if "user_id" in extra:
            # Only `user` names the user, so an API key bound to a user cannot be sidestepped.
            raise ApiError(400, "user_id: name the user with `user`", param="user_id")
        data: dict[str, Any] = {
            **extra,
            **self.model_dump(include=set(PASSED_ON), exclude_none=True),
            "messages": [m.refine_message() for m in self.messages],
        }
        if user_id is not None:
            data["user_id"] = user_id
        return data


PASSED_ON = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "thread_id",
    "persona",
    "knowledge",
    "draft",
    "response_format",
)
"""Request fields that are `RefineRequest` fields as they are (`draft` is passed as sent)."""


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


def finish_reason(result: RefineResult) -> str:
    return "tool_calls" if result.tool_calls else "stop"


def completion(result: RefineResult, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": assistant_text(result),
        "refusal": None,
    }
    if result.tool_calls:
        message["content"] = result.reply or None
        message["tool_calls"] = [call.model_dump() for call in result.tool_calls]
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage_block(result),
        "redraft": redraft_object(result),
    }


def tool_call_deltas(result: RefineResult) -> list[dict[str, Any]]:
    """The draft's tool calls as stream deltas: each whole in one chunk, as OpenAI may send."""
    return [
        {"tool_calls": [{"index": index, **call.model_dump()}]}
        for index, call in enumerate(result.tool_calls or [])
    ]


# ── the response, as models: the published OpenAPI schema is generated from these ─────────


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(description="The refined reply (null beside tool calls).")
    refusal: None = None
    tool_calls: list[ToolCall] | None = Field(
        None, description="The draft's tool calls, untouched."
    )


class Choice(BaseModel):
    index: int = 0
    message: CompletionMessage
    logprobs: None = None
    finish_reason: Literal["stop", "tool_calls"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A chat completion as OpenAI's, plus `redraft`: everything that explains the turn."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    redraft: RefineResult


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


# ── the published OpenAPI document ────────────────────────────────────────────────────────

_REF = "#/components/schemas/{model}"
COMPLETIONS_ROUTE: dict[str, Any] = {
    "summary": "Create a chat completion: the draft, refined",
    "description": "OpenAI's Chat Completions, plus redraft's fields (`thread_id`, `persona`, "
    "`knowledge`, `draft`, `strategy`) and the `redraft` object in the answer. With "
    "`stream: true` the answer is server-sent events of `chat.completion.chunk`s.",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model="ChatCompletionRequest")}}
            },
        }
    },
    "responses": {
        200: {"model": ChatCompletion, "description": "The refined completion (or its chunks)."},
        **{
            status: {"description": "An OpenAI-style error object."}
            for status in (400, 401, 413, 415, 429, 502, 504)
        },
    },
}


def publish_schemas(app: Any) -> None:
    """Publish `ChatCompletionRequest` (the body the route reads itself, to bound its size and
    depth first) among the app's OpenAPI schemas, generated from the model the server validates
    with, so the document cannot drift from what is accepted."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = default()
            request = ChatCompletionRequest.model_json_schema(ref_template=_REF)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(request.pop("$defs", {}))
            schemas["ChatCompletionRequest"] = request
        return app.openapi_schema

    app.openapi = openapi


def package_version() -> str:
    try:
        return importlib.metadata.version("redraft")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"
