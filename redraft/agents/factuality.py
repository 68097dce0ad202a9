"""Factuality critic: each claim of the reply checked against the evidence, with its passages.

The critic lists the checkable claims of the reply (facts, numbers, dates, names) and labels
each supported / contradicted / unverifiable with the ids of the passages it rests on: the
request's passages (p1..pn) and what the retrievers found (p(n+1)...). `finalize` keeps the
model honest: ids that name no passage are dropped, a verdict with no passage left becomes
unverifiable, and a contradicted claim is always fixed. Self-correction without evidence can
make replies worse, so with no evidence the critic only checks the reply against itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from redraft.agents.critic import Critic
from redraft.agents.prompting import block, last_user_message
from redraft.config import RefinerConfig
from redraft.knowledge.retrieval import request_passages
from redraft.state import Claim, CriticOutput, CriticTask, Critique, Issue, Passage

ASPECT = "factuality"

NO_EVIDENCE = "no evidence given: checked the reply against itself only"

SYSTEM = """\
You are the factuality critic of a chatbot. You check a draft reply against the evidence
passages given with it; each passage has an id (p1, p2, ...) and, when retrieved, a source.
1. In `claims`, list every checkable claim of the reply (facts, numbers, dates, names) in the
   reply's exact words, and label it:
   - supported: a passage says the same; give the passage ids in `passages`;
   - contradicted: a passage says otherwise; give the passage ids in `passages`;
   - unverifiable: no passage says either way.
2. Every contradicted claim is an issue: quote the claim as `span`, say what the passage says
   (with its id) as `problem`, and give the corrected wording, taken from the passage, as `fix`.
3. An unverifiable claim that is specific (a number, a date, a name, a precise fact the user
   would rely on) is an issue too: its fix hedges it or drops it. Never fix a claim with a fact
   that is not in the passages. Common knowledge no one would doubt needs no issue.
4. In `evidence`, list the ids of the passages you relied on.
With no passages at all, label every claim unverifiable and raise issues only for parts of the
reply that contradict each other.
Verdict `pass` when there is nothing to fix, otherwise `revise`.
"""


class ClaimList(BaseModel):
    claims: list[Claim] = Field(
        default_factory=list,
        description="Every checkable claim of the reply, labelled against the passages.",
    )


class FactualityOutput(CriticOutput, ClaimList):
    """The claims come first in the schema, so the model labels them before its verdict."""


def evidence_of(task: CriticTask) -> list[Passage]:
    """The turn's passages (request and retrieved), or the request's alone when the task was
    built without retrieval (as the sequential strategy does)."""
    if task.get("evidence"):
        return [Passage.model_validate(p) for p in task["evidence"]]
    return request_passages(task.get("knowledge") or [])


def source_attributes(passage: Passage) -> dict[str, str]:
    """Where a retrieved passage comes from, short and attribute-safe: the file name (never the
    whole path) and chunk. Request passages need none."""
    if passage.source == "request":
        return {}
    label = Path(passage.source).name or passage.source
    if passage.chunk is not None:
        label = f"{label}#{passage.chunk}"
    return {"source": re.sub(r"[^\w.#:/ -]", "_", label)[:120]}


def render_evidence(passages: Sequence[Passage]) -> str:
    body = "\n".join(block("passage", p.text, id=p.id, **source_attributes(p)) for p in passages)
    return f"<knowledge>\n{body or '(none)'}\n</knowledge>"


def render(task: CriticTask) -> str:
    return "\n\n".join(
        [
            block("query", last_user_message(task["history"])),
            render_evidence(evidence_of(task)),
            block("reply", task["reply"]),
        ]
    )


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _covered(claim: str, issues: Sequence[Issue]) -> bool:
    words = _normal(claim)
    return any(
        span and (span in words or words in span) for span in (_normal(i.span) for i in issues)
    )


def grounded(claim: Claim, known: set[str]) -> Claim:
    """The claim with only real passage ids; a verdict no real passage backs is unverifiable."""
    ids = [i for i in dict.fromkeys(claim.passages) if i in known]
    if claim.label == "unverifiable" or not ids:
        return Claim(text=claim.text, label="unverifiable", passages=[])
    return Claim(text=claim.text, label=claim.label, passages=ids)


def finalize(output: FactualityOutput, task: CriticTask, cfg: RefinerConfig) -> Critique:
    """The critique, with every label resting on passages that exist and no contradicted claim
    left unfixed (one the model labelled but gave no issue for gets one)."""
    known = {p.id for p in evidence_of(task)}
    claims = [grounded(c, known) for c in output.claims]
    issues = list(output.issues)
    for claim in claims:
        if claim.label == "contradicted" and not _covered(claim.text, issues):
            ids = ", ".join(claim.passages)
            issues.append(
                Issue(
                    span=claim.text,
                    problem=f"{ids} contradicts this claim",
                    fix=f"correct it with what {ids} says",
                )
            )
    contradicted = any(c.label == "contradicted" for c in claims)
    revise = bool(issues) and (output.verdict != "pass" or contradicted)
    cited = list(dict.fromkeys(i for c in claims for i in c.passages))
    evidence = cited + [e for e in output.evidence if e in known and e not in cited]
    return Critique(
        aspect=ASPECT,
        round=task["round"],
        verdict="revise" if revise else "pass",
        issues=issues if revise else [],
        confidence=output.confidence,
        evidence=evidence if known else [NO_EVIDENCE],
        claims=claims,
    )


CRITIC = Critic(
    aspect=ASPECT,
    system=SYSTEM,
    render=render,
    output=FactualityOutput,
    finalize=finalize,
    planner_hint="the reply states facts, numbers, dates or names that should match evidence",
    precedence=20,
)


def cited_passages(
    critique: Critique, evidence: Sequence[dict[str, Any]], *, corrected: bool
) -> list[dict[str, Any]]:
    """The passages the reply rests on after this critique: those supporting its claims and,
    when the reply was corrected, those it was corrected from."""
    labels = {"supported", "contradicted"} if corrected else {"supported"}
    ids = {i for claim in critique.claims if claim.label in labels for i in claim.passages}
    return [p for p in evidence if p["id"] in ids]
