"""Pairwise judge with balanced position calibration: which of two replies is better?

LLM judges favour a position ("Large Language Models are not Fair Evaluators", Wang et al.,
2023): swapping the two answers flips many verdicts. So every pair is judged twice, once in each
order; each reply's score is its mean over both orders, the verdict follows the mean scores, and
whether the two orders disagreed is reported. The judge writes its evidence before the scores
and says how certain it is ("Can LLM be a Personalized Judge?", Dong et al., 2024).
"""

from __future__ import annotations

import asyncio
from statistics import fmean

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from redraft.agents.judge import JudgeContext, judge_prompt
from redraft.agents.prompting import block
from redraft.llm.calls import call_structured
from redraft.state import TIE, PairwiseVerdict

AGENT = "pairwise_judge"

SYSTEM = """\
You compare two replies a chatbot could send to the last user turn of a conversation, and
judge which is better for this user: correct given the knowledge passages, fitting what is
known about the user, coherent with the conversation, natural to read. Which reply comes first
says nothing about its quality, and length alone is not quality.
First write your `evidence`: the differences that matter, quoting both replies. Then score each
reply from 1 (poor) to 10 (excellent); equal scores mean they are equally good. Last, give your
`certainty` that the better-scored reply really is better: 0 = a guess, 1 = certain.
"""


class PairwiseOutput(BaseModel):
    """One judgement of the pair in one order; evidence first, then the scores."""

    evidence: str = Field(description="The differences that decide, quoting both replies.")
    reply_1_score: int = Field(ge=1, le=10, description="Score of reply 1, 1–10.")
    reply_2_score: int = Field(ge=1, le=10, description="Score of reply 2, 1–10.")
    certainty: float = Field(ge=0.0, le=1.0, description="0 = a guess, 1 = certain.")


def winner_of(labels: tuple[str, str], score_first: float, score_second: float) -> str:
    """The label with the higher score, or TIE."""
    if score_first == score_second:
        return TIE
    return labels[0] if score_first > score_second else labels[1]


def balance(
    labels: tuple[str, str], a_first: PairwiseOutput, b_first: PairwiseOutput
) -> PairwiseVerdict:
    """Combine the two orders: `a_first` showed reply `labels[0]` as reply 1, `b_first` showed
    `labels[1]` as reply 1. Scores are averaged per reply across the orders."""
    a, b = labels
    score_a = fmean([a_first.reply_1_score, b_first.reply_2_score])
    score_b = fmean([a_first.reply_2_score, b_first.reply_1_score])
    verdicts = [
        winner_of(labels, a_first.reply_1_score, a_first.reply_2_score),
        winner_of(labels, b_first.reply_2_score, b_first.reply_1_score),
    ]
    return PairwiseVerdict(
        winner=winner_of(labels, score_a, score_b),
        scores={a: score_a, b: score_b},
        verdicts=verdicts,
        order_changed=verdicts[0] != verdicts[1],
        certainty=fmean([a_first.certainty, b_first.certainty]),
        evidence=[a_first.evidence, b_first.evidence],
    )


async def judge_once(
    model: BaseChatModel, context: JudgeContext, first: str, second: str, *, method: str
) -> PairwiseOutput:
    prompt = judge_prompt(
        AGENT, SYSTEM, context, block("reply", first, id="1"), block("reply", second, id="2")
    )
    return await call_structured(model, PairwiseOutput, prompt, agent=AGENT, method=method)


async def compare(
    model: BaseChatModel,
    context: JudgeContext,
    a: str,
    b: str,
    *,
    labels: tuple[str, str] = ("a", "b"),
    method: str = "json_schema",
) -> PairwiseVerdict:
    """Judge `a` against `b` in both orders, concurrently; raises if either judgement fails."""
    if labels[0] == labels[1] or TIE in labels:
        raise ValueError(f"labels must be two different names other than {TIE!r}: {labels}")
    try:
        async with asyncio.TaskGroup() as group:
            a_first = group.create_task(judge_once(model, context, a, b, method=method))
            b_first = group.create_task(judge_once(model, context, b, a, method=method))
    except ExceptionGroup as errors:  # the first failure says what went wrong
        raise errors.exceptions[0] from None
    return balance(labels, a_first.result(), b_first.result())
