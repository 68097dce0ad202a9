"""The data of one turn: request and result, structured agent outputs, and the graph state."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12 (graph schemas)

from redraft.config import Domain
from redraft.request_limits import (
    check_identifier,
    check_texts,
    check_total,
    draft_chars,
    limit,
)
from redraft.response_format import check_format

Verdict = Literal["pass", "revise", "ask", "block"]

# PENGUIN's (arXiv 2505.18882) sensitive domains and the ten user attributes of its profiles.
DOMAINS: tuple[str, ...] = get_args(Domain)
PenguinAttribute = Literal[
    "Age",
    "Gender",
    "Marital Status",
    "Profession",
    "Economic Status",
    "Education Level",
    "Health Status",
    "Mental Health Status",
    "Past Self-Harm History",
    "Emotional State",
]
PENGUIN_ATTRIBUTES: tuple[str, ...] = get_args(PenguinAttribute)

DEFAULT_MAX_MESSAGES = 500
DEFAULT_MAX_MESSAGE_CHARS = 64_000


def is_penguin_attribute(name: str) -> TypeGuard[PenguinAttribute]:
    """`name in PENGUIN_ATTRIBUTES`, in a form that narrows `name` for the type checker."""
    return name in PENGUIN_ATTRIBUTES


# ── request and result ──────────────────────────────────────────────────────────────────


TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""OpenAI's function-name rule (plus dots): a name also appears in prompts, so no markup."""
MAX_TOOLS = 128
MAX_PARTS = 64


class FunctionCall(BaseModel):
    """The function of a tool call; `arguments` is the JSON text the model wrote, kept as is."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=TOOL_NAME.pattern)
    arguments: str = Field("{}", max_length=DEFAULT_MAX_MESSAGE_CHARS)


class ToolCall(BaseModel):
    """One tool call of an assistant message, in OpenAI's wire form."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One OpenAI-style chat message.

    Assistant messages may carry `tool_calls` (their `content` may then be null or empty);
    `tool` messages are a tool's result for the call `tool_call_id`. Stored and rendered with
    `content` always a string ("" when there is none), so every reader sees text. Content given
    as OpenAI content parts is kept in `parts` (the responding model gets them as they came);
    `content` is then their text, with a placeholder for each image or other non-text part.
    """

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(None, min_length=1, max_length=256)
    name: str | None = Field(
        None, pattern=TOOL_NAME.pattern, description="A tool message's tool (found by its call)."
    )
    parts: list[dict[str, Any]] | None = Field(None, max_length=MAX_PARTS)
    # last, so that its checks see the role and the tool calls (and errors name `content`)
    content: str = ""

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A plain message dumps as `{"role", "content"}`, as before tools: the fields only tool
        turns have are left out when empty, so stored threads and case hashes keep their form."""
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in ("role", "content")}

    @model_validator(mode="before")
    @classmethod
    def _content_parts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("role") != "tool":
            data.pop("name", None)  # a participant's name: not a tool's, and not used
        content = data.get("content")
        if isinstance(content, list):
            try:
                data["parts"], data["content"] = content, parts_text(content)
            except ValueError:
                pass  # `content` reports it, by name
        return data

    @field_validator("content", mode="before")
    @classmethod
    def _string_content(cls, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, list):
            return parts_text(value)  # raises: the parts were not readable
        if not isinstance(value, str):
            raise ValueError("content must be a string or a list of content parts")
        return value

    @field_validator("content")
    @classmethod
    def _said_something(cls, value: str, info: ValidationInfo) -> str:
        role = info.data.get("role")
        calls = info.data.get("tool_calls")
        if role != "tool" and not (role == "assistant" and calls) and not value.strip():
            raise ValueError("content must not be empty")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Message:
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs `tool_call_id`")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry `tool_calls`")
        if self.tool_calls == []:
            self.tool_calls = None
        return self

    def wire(self) -> dict[str, Any]:
        """As stored in a thread and sent on: only the fields that are set."""
        return self.model_dump(exclude_none=True)


def parts_text(parts: list[Any]) -> str:
    """The text of OpenAI content parts; each non-text part is a placeholder naming its type
    (critics read text only, and must not take a missing image for a missing answer)."""
    if len(parts) > MAX_PARTS:
        raise ValueError(f"at most {MAX_PARTS} content parts are accepted, got {len(parts)}")
    texts = []
    for index, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"content part {index} must be an object with a `type`")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ValueError(f"content part {index}: a text part needs a string `text`")
            texts.append(part["text"])
        else:
            texts.append(f"[{kind[:40]} not shown]")
    return "\n".join(texts)


class DraftReply(BaseModel):
    """A handed-in draft that is an assistant message, e.g. a tool call (returned untouched)."""

    model_config = ConfigDict(extra="ignore")

    content: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOLS)


def tool_names(messages: list[Message]) -> list[Message]:
    """`messages` with each tool message's `name` filled in from the call it answers."""
    called = {c.id: c.function.name for m in messages for c in m.tool_calls or []}
    return [
        m.model_copy(update={"name": called[m.tool_call_id]})
        if m.role == "tool" and m.name is None and m.tool_call_id in called
        else m
        for m in messages
    ]


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
    draft: str | DraftReply | None = Field(
        None,
        description="A reply to refine instead of drafting one: text, or an assistant message "
        "(one with `tool_calls` is returned untouched).",
    )
    tools: list[dict[str, Any]] | None = Field(
        None,
        max_length=MAX_TOOLS,
        description="OpenAI tool definitions offered to the responding model; a draft that "
        "calls one is returned as it is.",
    )
    response_format: dict[str, Any] | None = Field(
        None,
        description="OpenAI's response_format: with JSON asked for, a rewrite is kept only when "
        "it still parses (and meets the schema); else the draft is the reply.",
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None, description='"none", "auto", "required", or {"type": "function", "function": ...}'
    )
    parallel_tool_calls: bool | None = None

    @property
    def draft_text(self) -> str | None:
        """The handed-in draft's text (None when redraft writes the draft)."""
        if isinstance(self.draft, DraftReply):
            return self.draft.content or ""
        return self.draft

    @field_validator("tools")
    @classmethod
    def _function_tools(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, tool in enumerate(tools or []):
            function = tool.get("function") if tool.get("type") == "function" else None
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                raise ValueError(
                    f"tool {index} must be {{'type': 'function', 'function': {{'name': ...}}}} "
                    "with a name of letters, digits, _ . - (at most 64)"
                )
        return tools or None

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_format(value)

    @field_validator("tool_choice")
    @classmethod
    def _named_choice(cls, choice: Any) -> Any:
        if isinstance(choice, str) and choice not in ("none", "auto", "required"):
            raise ValueError("must be none, auto, required or {'type': 'function', ...}")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if choice.get("type") != "function" or not isinstance(name, str):
                raise ValueError("must be none, auto, required or {'type': 'function', ...}")
        return choice

    @field_validator("messages", mode="after")
    @classmethod
    def _name_tool_results(cls, messages: list[Message]) -> list[Message]:
        return tool_names(messages)

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
    def _draft_not_blank(cls, value: str | DraftReply | None) -> str | DraftReply | None:
        if isinstance(value, DraftReply):
            if value.tool_calls:
                return value
            value = value.content or ""
        if value is not None and not value.strip():
            raise ValueError("draft must not be empty when given")
        return value

    @field_validator("user_id", "thread_id")
    @classmethod
    def _storable_id(cls, value: str | None) -> str | None:
        return value if value is None else check_identifier(value)

    @field_validator("persona")
    @classmethod
    def _facts_within_limits(cls, facts: list[str], info: ValidationInfo) -> list[str]:
        context = info.context
        most, chars = limit(context, "max_persona_facts"), limit(context, "max_fact_chars")
        check_texts(facts, what="fact", most=most, most_chars=chars)
        return facts

    @field_validator("knowledge")
    @classmethod
    def _passages_within_limits(cls, passages: list[str], info: ValidationInfo) -> list[str]:
        context = info.context
        most, chars = limit(context, "max_passages"), limit(context, "max_passage_chars")
        check_texts(passages, what="passage", most=most, most_chars=chars)
        return passages

    @field_validator("draft")
    @classmethod
    def _draft_within_limit(cls, value: Any, info: ValidationInfo) -> Any:
        most, chars = limit(info.context, "max_draft_chars"), draft_chars(value)
        if chars > most:
            raise ValueError(f"the draft has {chars} characters; at most {most} are accepted")
        return value

    @model_validator(mode="after")
    def _total_within_limit(self, info: ValidationInfo) -> RefineRequest:
        texts = [m.content for m in self.messages] + self.persona + self.knowledge
        check_total(sum(map(len, texts)) + draft_chars(self.draft), info.context)
        return self


class Issue(BaseModel):
    """One problem a critic found, with the fix it proposes."""

    span: str = Field(description="The exact words of the reply the issue is about.")
    problem: str = Field(description="What is wrong, in one sentence.")
    fix: str = Field(description="What the reply should say or do instead.")


class Passage(BaseModel):
    """A piece of evidence. The request's passages are p1..pn; retrieved ones continue the
    numbering and name their source (a file of the knowledge base, or a retriever)."""

    id: str
    text: str
    source: str = Field("request", description="`request`, a file path, or a retriever.")
    chunk: int | None = Field(None, description="Chunk number within the source file.")


class Claim(BaseModel):
    """One checkable claim of a reply and what the evidence says about it."""

    text: str = Field(description="The claim, in the exact words of the reply.")
    label: Literal["supported", "contradicted", "unverifiable"] = Field(
        description="supported or contradicted by a passage, or unverifiable (no passage "
        "says either way)."
    )
    passages: list[str] = Field(
        default_factory=list, description="Ids of the passages the label rests on (e.g. p2)."
    )


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


class SafetyDetails(BaseModel):
    """The safety critic's reading of a sensitive turn."""

    domain: str | None = None
    risk: str = "low"
    completeness: int = 5
    known: list[str] = Field(default_factory=list, description="Attributes already known.")
    ask_attribute: str | None = None
    question: str | None = None
    safe_reply: str | None = None


class Critique(CriticOutput):
    """A critic's verdict on one aspect of one reply."""

    aspect: str
    round: int = 1
    safety: SafetyDetails | None = None
    claims: list[Claim] = Field(
        default_factory=list, description="Factuality: each claim checked, and against what."
    )


class PlanStep(BaseModel):
    aspect: str
    reason: str = Field(description="One line: why this aspect needs checking in this turn.")


class PlannerOutput(BaseModel):
    """The MARA planner's answer: which aspects to check, in order, and why."""

    steps: list[PlanStep] = Field(
        default_factory=list,
        description="Aspects to check, most important first; empty for chit-chat.",
    )


@functools.lru_cache(maxsize=64)
def planner_output(aspects: tuple[str, ...]) -> type[PlannerOutput]:
    """PlannerOutput whose steps can name only `aspects`: an enum in the schema the model gets
    (built once per set of critics, so the structured-output runnable is reused)."""
    choice: Any = Literal[aspects]
    step = create_model("PlanStep", __base__=PlanStep, __module__=__name__, aspect=(choice, ...))
    steps = PlannerOutput.model_fields["steps"]
    return create_model(
        "PlannerOutput",
        __base__=PlannerOutput,
        __doc__=PlannerOutput.__doc__,
        __module__=__name__,
        steps=(list[step], Field(default_factory=list, description=steps.description)),
    )


class Plan(BaseModel):
    """This turn's critics: in order, with a reason each, and which mode chose them.

    The router also scores every aspect (0–1, chosen at ≥ 0.5) and reads the query's
    sensitivity and domain; `scores` always holds `safety`, even when no safety critic runs.
    """

    aspects: list[str] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict)
    source: str = "all"
    scores: dict[str, float] = Field(default_factory=dict)
    sensitive: bool = False
    domain: Domain | None = None


class Change(BaseModel):
    aspect: str = Field(description="The aspect whose critique caused this change.")
    change: str = Field(description="What was changed, in a few words.")


class Override(BaseModel):
    """A lower-precedence fix left out because a higher-precedence aspect's fix covers the same
    words: the precedence at work, not a failure."""

    aspect: str = Field(description="The aspect whose fix was left out.")
    span: str = Field(description="The words both fixes were about.")
    by: str = Field(description="The higher-precedence aspect whose fix was applied.")


class EditorOutput(BaseModel):
    """The editor's rewrite and which critique caused which change."""

    changes: list[Change] = Field(default_factory=list)
    reply: str = Field(description="The full refined reply, ready to send.")


class SequentialStepOutput(CriticOutput):
    """MARA's sequential agents critique and rewrite in one call."""

    reply: str = Field(description="The full reply after this agent's refinement.")


class SafetyQuestion(BaseModel):
    """A question the safety agent asked before answering; the user's next message answers."""

    attribute: str
    question: str
    answer: str | None = None
    declined: bool = False


class Degradation(BaseModel):
    """Something the turn skipped, and why."""

    step: str
    reason: str


TIE = "tie"


class PairwiseVerdict(BaseModel):
    """Two replies judged in both orders (balanced position calibration).

    Replies are named by labels (e.g. "draft" and "refined"); `winner` is a label or "tie".
    """

    winner: str
    scores: dict[str, float] = Field(description="label → mean 1–10 score over both orders")
    verdicts: list[str] = Field(
        description="The winner in each order: first label shown first, then second first."
    )
    order_changed: bool = Field(description="The two orders gave different verdicts.")
    certainty: float = Field(description="The judge's mean certainty, 0–1.")
    evidence: list[str] = Field(default_factory=list, description="The judge's evidence per order.")


class GateDecision(BaseModel):
    """The regression gate: the refined reply is sent only if a judge prefers it to the draft."""

    kept: Literal["refined", "draft"]
    verdict: PairwiseVerdict | None = Field(
        None, description="Labels draft and refined; None when the judge failed (see degraded)."
    )


class AgentUsage(BaseModel):
    calls: int = Field(0, description="Provider calls sent, every retry included.")
    retries: int = Field(0, description="Calls that repeated one that failed or timed out.")
    failed_calls: int = Field(0, description="Calls that failed or timed out.")
    prompt_tokens: int = 0
    completion_tokens: int = Field(
        0, description="Output tokens, those of outputs that did not parse included."
    )


class Usage(BaseModel):
    llm_calls: int = Field(0, description="Provider calls sent, every retry included.")
    retries: int = 0
    failed_calls: int = 0
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
    question: SafetyQuestion | None = Field(
        None, description="Pending: the reply is this question; the next user message answers."
    )
    asked: list[SafetyQuestion] = Field(
        default_factory=list, description="Questions asked and answered during this turn."
    )
    blocked: bool = Field(False, description="A crisis: the reply is the safe message.")
    degraded: list[Degradation] | None = Field(
        None, description="What failed or was skipped, and why (None: nothing did)."
    )
    overridden: list[Override] = Field(
        default_factory=list, description="Fixes left out under the precedence of aspects."
    )
    tool_calls: list[ToolCall] | None = Field(
        None,
        description="The draft called tools: returned untouched, with `reply` its text (often "
        "empty); nothing was refined.",
    )
    citations: list[Passage] = Field(
        default_factory=list, description="The passages that support the final reply."
    )
    gate: GateDecision | None = Field(
        None, description="Set when the regression gate judged the refined reply (gate=True)."
    )
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
    if isinstance(update, dict):  # the one dict a node sends is a reset
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
    # this turn; `started`: when it started (epoch seconds), for the deadline (`deadline_s`)
    started: float
    user_id: str
    persona: list[str]
    # passage texts: the request's, then retrieved ones (ids p1..pn in this order)
    knowledge: list[str]
    # the same passages as `Passage` dicts, with ids and sources; those the reply rests on
    evidence: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    draft: str
    reply: str
    # the draft's tool calls (OpenAI wire dicts): the turn ends with them, unrefined
    tool_calls: list[dict[str, Any]] | None
    streamed: bool
    drafted: bool
    plan: dict[str, Any]
    round: int
    pending: list[str]
    ask: dict[str, Any] | None
    blocked: bool
    gate: dict[str, Any] | None
    # persisted for the thread: what the safety agent learned and how often it asked
    attributes: dict[str, str]
    declined: list[str]
    questions_asked: int
    asked: Annotated[list[dict[str, Any]], turn_list]
    critiques: Annotated[list[dict[str, Any]], turn_list]
    changes: Annotated[list[dict[str, Any]], turn_list]
    overridden: Annotated[list[dict[str, Any]], turn_list]
    degraded: Annotated[list[dict[str, str]], turn_list]
    timings: Annotated[dict[str, float], merge_timings]


class CriticTask(TypedDict, total=False):
    """What `Send` hands one critic: the reply to check and the turn's context."""

    reply: str
    round: int
    started: float | None
    history: list[dict[str, str]]
    persona: list[str]
    knowledge: list[str]
    evidence: list[dict[str, Any]]
    # for the safety critic
    request: str  # what the user asked for, not an answer to one of its questions
    attributes: dict[str, str]
    declined: list[str]
    questions_left: int
    domain: str | None
    examples: list[dict[str, Any]]


__all__ = [
    "AgentUsage",
    "Change",
    "Claim",
    "CriticOutput",
    "CriticTask",
    "Critique",
    "Degradation",
    "DraftReply",
    "EditorOutput",
    "FunctionCall",
    "GateDecision",
    "Issue",
    "Message",
    "Override",
    "PairwiseVerdict",
    "Passage",
    "Plan",
    "PlanStep",
    "PlannerOutput",
    "RefineRequest",
    "RefineResult",
    "SafetyDetails",
    "SafetyQuestion",
    "SequentialStepOutput",
    "ToolCall",
    "TurnState",
    "Usage",
]
