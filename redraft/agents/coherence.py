"""Coherence critic: does the reply hold together with the whole conversation so far?

It looks for contradictions with earlier assistant turns, questions of the user left
unanswered, drift from the user's last turn and repetition. A contradiction must be quoted:
`finalize` checks each quote against the conversation, cites the turn it comes from in the
critique's evidence (`turn 3: "..."`) and hands it to the editor; a contradiction whose quote
is in no assistant turn was invented, and the issue resting on it is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from redraft.agents.critic import Critic
from redraft.agents.prompting import block, conversation
from redraft.config import RefinerConfig
from redraft.state import CriticOutput, CriticTask, Critique, Issue

ASPECT = "coherence"

# As much of the conversation as fits this many characters (about 6k tokens), newest kept.
HISTORY_CHARS = 24_000

SYSTEM = """\
You are the coherence critic of a chatbot. You check a draft reply against the conversation so
far (numbered turns, newest last; the reply answers the last user turn). Look for:
- a contradiction with an earlier assistant turn: list it in `contradictions` with the turn's
  number, the exact words of that turn it conflicts with (`quote`) and the words of the reply
  (`span`);
- a question of the user left unanswered;
- drift away from what the user's last turn asked;
- needless repetition of earlier turns, or within the reply;
- a reply that is not logically consistent in itself.
Each problem is an issue: quote the part of the reply as `span`, explain in `problem`, and give
the coherent wording as `fix`. For a contradiction, the fix keeps to what was said before or,
when the reply corrects an earlier mistake, says so openly.
Verdict `pass` when the reply follows the conversation well, otherwise `revise`.
"""


class Contradiction(BaseModel):
    turn: int = Field(description="Number of the earlier assistant turn (n of <turn n=...>).")
    quote: str = Field(description="The exact words of that turn the reply contradicts.")
    span: str = Field(description="The words of the reply that contradict it.")


class ContradictionList(BaseModel):
    contradictions: list[Contradiction] = Field(
        default_factory=list, description="Contradictions with earlier assistant turns."
    )


class CoherenceOutput(CriticOutput, ContradictionList):
    """Contradictions come first in the schema, so the model quotes before it judges."""


def turns_within(history: Sequence[dict[str, str]], budget: int = HISTORY_CHARS) -> int:
    """How many of the latest turns fit the character budget (at least the last one)."""
    turns = [m for m in history if m["role"] in ("user", "assistant")]
    used = count = 0
    for message in reversed(turns):
        used += len(message["content"])
        if count and used > budget:
            break
        count += 1
    return count


def render(task: CriticTask) -> str:
    history = task["history"]
    return "\n\n".join(
        [conversation(history, last=turns_within(history)), block("reply", task["reply"])]
    )


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).strip(" \"'“”‘’.,;:!?")


def _overlaps(a: str, b: str) -> bool:
    a, b = _normal(a), _normal(b)
    return bool(a and b) and (a in b or b in a)


def locate(contradiction: Contradiction, history: Sequence[dict[str, str]]) -> int | None:
    """The number of the assistant turn that really contains the quote: the one named, else
    the latest that does; None when no assistant turn says it."""
    quote = _normal(contradiction.quote)
    if not quote:
        return None
    turns = [m for m in history if m["role"] in ("user", "assistant")]
    says = [
        n
        for n, m in enumerate(turns, 1)
        if m["role"] == "assistant" and quote in _normal(m["content"])
    ]
    if contradiction.turn in says:
        return contradiction.turn
    return says[-1] if says else None


def finalize(output: CoherenceOutput, task: CriticTask, cfg: RefinerConfig) -> Critique:
    """The critique, with each contradiction quoted from the turn it conflicts with."""
    quoted: list[tuple[Contradiction, int]] = []
    invented: list[Contradiction] = []
    for contradiction in output.contradictions:
        turn = locate(contradiction, task["history"])
        if turn is None:
            invented.append(contradiction)
        else:
            quoted.append((contradiction, turn))
    issues = [
        issue
        for issue in output.issues
        if not any(_overlaps(issue.span, c.span) for c in invented)
        or any(_overlaps(issue.span, c.span) for c, _ in quoted)
    ]
    for contradiction, turn in quoted:
        note = f'turn {turn} said: "{contradiction.quote.strip()}"'
        matching = [
            i for i, issue in enumerate(issues) if _overlaps(issue.span, contradiction.span)
        ]
        for i in matching:
            if not _overlaps(contradiction.quote, issues[i].problem):
                problem = f"{issues[i].problem} ({note})"
                issues[i] = issues[i].model_copy(update={"problem": problem})
        if not matching:
            issues.append(
                Issue(
                    span=contradiction.span,
                    problem=f"contradicts what the assistant said earlier ({note})",
                    fix=f"keep to what turn {turn} said, or say openly that this corrects it",
                )
            )
    evidence = list(
        dict.fromkeys(
            [f'turn {turn}: "{c.quote.strip()}"' for c, turn in quoted]
            + [e for e in output.evidence if not any(_overlaps(c.quote, e) for c in invented)]
        )
    )
    revise = bool(issues) and (output.verdict != "pass" or bool(quoted))
    return Critique(
        aspect=ASPECT,
        round=task["round"],
        verdict="revise" if revise else "pass",
        issues=issues if revise else [],
        confidence=output.confidence,
        evidence=evidence,
    )


CRITIC = Critic(
    aspect=ASPECT,
    system=SYSTEM,
    render=render,
    output=CoherenceOutput,
    finalize=finalize,
    planner_hint="the reply must stay consistent with earlier turns of the conversation",
    precedence=40,
)
