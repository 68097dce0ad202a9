"""The data of one turn: request and result, structured agent outputs, and the graph state."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from redraft.config import Aspect

# Merge order when critiques conflict: the earlier aspect wins.
PRECEDENCE: tuple[str, ...] = ("safety", "factuality", "personalization", "coherence")

Verdict = Literal["pass", "revise", "ask", "block"]

DEFAULT_MAX_MESSAGES = 500
DEFAULT_MAX_MESSAGE_CHARS = 64_000


# ── request and result ──────────────────────────────────────────────────────────────────


class Message(BaseModel):
    """One OpenAI-style chat message."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(min_length=1)

    @field_validator("content", mode="before")
    @classmethod
    def _string_content(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("content must be a string")
        if not value.strip():
            raise ValueError("content must not be empty")
        return value


class RefineRequest(BaseModel):
    """One turn to refine.

    Limits come from the validation context (`{"max_messages": .., "max_message_chars": ..}`);
    the Refiner passes its config's limits, the defaults apply otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)
    user_id: str = Field("default", min_length=1, max_length=256)
    thread_id: str | None = Field(None, min_length=1, max_length=256)
    persona: list[str] = Field(default_factory=list, description="Inline persona facts.")
    knowledge: list[str] = Field(default_factory=list, description="Evidence passages.")
    draft: str | None = Field(None, description="A reply to refine instead of drafting one.")

    @field_validator("messages")
    @classmethod
    def _within_limits(cls, messages: list[Message], info: ValidationInfo) -> list[Message]:
        limits = info.context or {}
        max_messages = limits.get("max_messages", DEFAULT_MAX_MESSAGES)
        max_chars = limits.get("max_message_chars", DEFAULT_MAX_MESSAGE_CHARS)
        if len(messages) > max_messages:
            raise ValueError(f"at most {max_messages} messages are accepted, got {len(messages)}")
        for index, message in enumerate(messages):
            if len(message.content) > max_chars:
                raise ValueError(
                    f"message {index} has {len(message.content)} characters; "
                    f"at most {max_chars} are accepted"
                )
        return messages

    @model_validator(mode="after")
    def _has_user_message(self) -> RefineRequest:
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages must contain at least one user message")
        return self

    @field_validator("draft")
    @classmethod
    def _draft_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("draft must not be empty when given")
        return value


class Issue(BaseModel):
    """One problem a critic found, with the fix it proposes."""

    span: str = Field(description="The exact words of the reply the issue is about.")
    problem: str = Field(description="What is wrong, in one sentence.")
    fix: str = Field(description="What the reply should say or do instead.")


class CriticOutput(BaseModel):
    """What a critic model returns (the aspect is known from the critic)."""

    verdict: Verdict = Field(
        description="pass: nothing to change. revise: apply the issues. "
        "ask: the user must be asked first. block: the reply must not be sent."
    )
    issues: list[Issue] = Field(default_factory=list, description="Empty when the verdict is pass.")
    confidence: float = Field(0.5, ge=0.0, le=1.0, description="How sure the critic is.")
    evidence: list[str] = Field(
        default_factory=list, description="References used: passage ids, turn numbers, facts."
    )


class Critique(CriticOutput):
    """A critic's verdict on one aspect of one reply."""

    aspect: str
    round: int = 1


class PlanStep(BaseModel):
    aspect: Aspect
    reason: str = Field(description="One line: why this aspect needs checking in this turn.")


class PlannerOutput(BaseModel):
    """The MARA planner's answer: which aspects to check, in order, and why."""

    steps: list[PlanStep] = Field(
        default_factory=list,
        description="Aspects to check, most important first; empty for chit-chat.",
    )


class Plan(BaseModel):
    """This turn's critics: in order, with a reason each, and which mode chose them."""

    aspects: list[str] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict)
    source: str = "all"


class Change(BaseModel):
    aspect: str = Field(description="The aspect whose critique caused this change.")
    change: str = Field(description="What was changed, in a few words.")


class EditorOutput(BaseModel):
    """The editor's rewrite and which critique caused which change."""

    changes: list[Change] = Field(default_factory=list)
    reply: str = Field(description="The full refined reply, ready to send.")


class SequentialStepOutput(CriticOutput):
    """MARA's sequential agents critique and rewrite in one call."""

    reply: str = Field(description="The full reply after this agent's refinement.")


class Degradation(BaseModel):
    """Something the turn skipped, and why."""

    step: str
    reason: str


class AgentUsage(BaseModel):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Usage(BaseModel):
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_agent: dict[str, AgentUsage] = Field(default_factory=dict)


class RefineResult(BaseModel):
    """What a turn returns: the reply and everything that explains it."""

    reply: str
    draft: str
    changed: bool
    plan: Plan
    critiques: list[Critique] = Field(default_factory=list)
    changes: list[Change] = Field(default_factory=list)
    degraded: list[Degradation] | None = None
    usage: Usage = Field(default_factory=Usage)
    timings: dict[str, float] = Field(default_factory=dict, description="ms per node, and total")
    strategy: str = "parallel"
    thread_id: str | None = None


# ── graph state ─────────────────────────────────────────────────────────────────────────


def turn_list(current: list | None, update: list | dict | None) -> list:
    """Append reducer that a node can reset with `{"reset": [...]}`.

    With a checkpointer, a plain `operator.add` list keeps growing across turns; the first node
    of every turn resets these lists.
    """
    if isinstance(update, dict) and "reset" in update:
        return list(update["reset"])
    return (current or []) + (update or [])


def merge_timings(current: dict | None, update: dict | None) -> dict:
    """Adds up ms per node; `{"reset": True, ...}` starts the turn's timings afresh."""
    update = dict(update or {})
    merged = {} if update.pop("reset", False) else dict(current or {})
    for node, ms in update.items():
        merged[node] = merged.get(node, 0.0) + ms
    return merged


class TurnState(TypedDict, total=False):
    """LangGraph state. `history` persists across turns of a thread; the rest is per turn."""

    # input
    request: dict[str, Any]
    # persisted conversation (OpenAI-style dicts), including the replies sent
    history: list[dict[str, str]]
    # this turn
    user_id: str
    persona: list[str]
    knowledge: list[str]
    draft: str
    reply: str
    streamed: bool
    drafted: bool
    plan: dict[str, Any]
    round: int
    pending: list[str]
    critiques: Annotated[list[dict[str, Any]], turn_list]
    changes: Annotated[list[dict[str, Any]], turn_list]
    degraded: Annotated[list[dict[str, str]], turn_list]
    timings: Annotated[dict[str, float], merge_timings]


class CriticTask(TypedDict):
    """What `Send` hands one critic: the reply to check and the turn's context."""

    reply: str
    round: int
    history: list[dict[str, str]]
    persona: list[str]
    knowledge: list[str]


__all__ = [
    "PRECEDENCE",
    "AgentUsage",
    "Change",
    "CriticOutput",
    "CriticTask",
    "Critique",
    "Degradation",
    "EditorOutput",
    "Issue",
    "Message",
    "Plan",
    "PlanStep",
    "PlannerOutput",
    "RefineRequest",
    "RefineResult",
    "SequentialStepOutput",
    "TurnState",
    "Usage",
]
