"""G-Eval-style judge: one reply scored 1–5 on five dimensions, evidence before each score.

As in G-Eval (Liu et al., 2023) the judge gets the task, a rubric per dimension and evaluation
steps, and fills in a form. Unlike G-Eval it does not weight scores by token probabilities:
OpenAI-compatible servers do not all return log-probabilities, so the score is the one written.
The evidence field comes before the score in the schema, so the model reasons before it scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field

from redraft.agents.prompting import agent_system, block, blocks, conversation, user_message
from redraft.llm.budget import NO_TRIM, Prompt, Trim
from redraft.llm.calls import call_structured

AGENT = "judge"

DIMENSIONS: tuple[str, ...] = (
    "factuality",
    "personalization",
    "coherence",
    "naturalness",
    "overall",
)

SYSTEM = """\
You evaluate one reply of a chatbot: the reply to the last user turn of the conversation.
Score it on each dimension from 1 (poor) to 5 (excellent) with this rubric:
- factuality: 5 = every claim agrees with the knowledge passages (or is common knowledge) and
  nothing is invented; 3 = small unsupported details; 1 = contradicts the passages or invents
  key facts. With no passages, judge against well-established knowledge.
- personalization: 5 = uses what is known about the user where it matters, in a tone that suits
  them; 3 = generic but never at odds with them; 1 = ignores or contradicts what is known. With
  no facts about the user, judge the fit to the user as the conversation shows them.
- coherence: 5 = answers the last user turn and agrees with earlier turns and with itself;
  3 = partly off the point or repetitive; 1 = contradicts earlier turns or misses the question.
- naturalness: 5 = fluent and natural, as a thoughtful person would write, of fitting length;
  3 = stiff or padded; 1 = robotic, garbled or far too long or short.
- overall: how good the reply is for this user at this point of the conversation.
Steps, for each dimension: read the conversation and the context; find the parts of the reply
that matter for the dimension; write them down as `evidence` (quote the reply); only then give
the `score`. A reference reply, when given, is one good answer, not the only one. Length alone
is not quality.
"""


@dataclass
class JudgeContext:
    """What a judge knows about the turn. `history` ends with the user message replied to;
    `profile` is the user's full profile (PENGUIN attributes), shown to judges only."""

    history: list[dict[str, str]]
    persona: list[str] = field(default_factory=list)
    knowledge: list[str] = field(default_factory=list)
    reference: str | None = None
    profile: dict[str, str] | None = None


def render_context(context: JudgeContext, trim: Trim = NO_TRIM) -> str:
    """The turn as delimited blocks: conversation, facts about the user, passages, reference;
    `trim` leaves out the oldest turns, the lower passages and the last facts first."""
    parts = [
        conversation(trim.numbered_history(context.history), last=10),
        blocks("persona", "fact", trim.persona(context.persona), id_prefix="f"),
        blocks("knowledge", "passage", trim.passages(context.knowledge), id_prefix="p"),
    ]
    if context.reference:
        parts.append(block("reply", context.reference, id="reference"))
    return "\n\n".join(parts)


def judge_prompt(
    agent: str, system: str, context: JudgeContext, *replies: str, before: str = ""
) -> Prompt:
    """A judge's prompt that fits the judge's context window the way every agent's does
    (`redraft.llm.budget`): the replies judged and `before` are never cut."""

    def build(trim: Trim) -> list[BaseMessage]:
        return [
            agent_system(agent, system),
            user_message(*([before] if before else []), render_context(context, trim), *replies),
        ]

    return Prompt(
        build,
        history=len(context.history),
        passages=len(context.knowledge),
        persona=len(context.persona),
    )


class Assessment(BaseModel):
    """One dimension: the evidence first, then the score it supports."""

    evidence: str = Field(description="The parts of the reply that decide the score, quoted.")
    score: int = Field(ge=1, le=5, description="1 (poor) to 5 (excellent), by the rubric.")


class JudgeOutput(BaseModel):
    factuality: Assessment
    personalization: Assessment
    coherence: Assessment
    naturalness: Assessment
    overall: Assessment

    def scores(self) -> dict[str, int]:
        return {name: getattr(self, name).score for name in DIMENSIONS}


async def judge_reply(
    model: BaseChatModel,
    context: JudgeContext,
    reply: str,
    *,
    method: str = "json_schema",
    agent: str = AGENT,
) -> JudgeOutput:
    """Score `reply` on every dimension (one structured call). `agent` names the call in usage
    and logs (the calibration's calls are the same judge, counted apart)."""
    prompt = judge_prompt(agent, SYSTEM, context, block("reply", reply, id="evaluated"))
    return await call_structured(model, JudgeOutput, prompt, agent=agent, method=method)
