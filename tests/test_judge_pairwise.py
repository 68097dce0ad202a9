"""Pairwise judging in both orders: the arithmetic, and the real calls over HTTP."""

from __future__ import annotations

import re

import pytest

from redraft.agents.judge import JudgeContext
from redraft.agents.pairwise_judge import PairwiseOutput, balance, compare
from redraft.llm.calls import make_chat_model
from tests.conftest import user

LABELS = ("draft", "refined")
CONTEXT = JudgeContext(history=[user("When did the tower open?")])


def out(first: int, second: int, certainty: float = 0.8, evidence: str = "e") -> PairwiseOutput:
    return PairwiseOutput(
        evidence=evidence, reply_1_score=first, reply_2_score=second, certainty=certainty
    )


# ── arithmetic ───────────────────────────────────────────────────────────────────────


def test_consistent_judge_both_orders_agree():
    # draft shown first: draft 4, refined 8; refined shown first: refined 7, draft 5
    verdict = balance(LABELS, out(4, 8, 0.9, "a"), out(7, 5, 0.7, "b"))
    assert verdict.scores == {"draft": 4.5, "refined": 7.5}
    assert verdict.verdicts == ["refined", "refined"]
    assert verdict.winner == "refined"
    assert verdict.order_changed is False
    assert verdict.certainty == pytest.approx(0.8)
    assert verdict.evidence == ["a", "b"]


def test_position_bias_is_reported_and_cancels_out():
    # the judge prefers whatever comes first, by the same margin
    verdict = balance(LABELS, out(8, 6), out(8, 6))
    assert verdict.verdicts == ["draft", "refined"]
    assert verdict.order_changed is True
    assert verdict.scores == {"draft": 7.0, "refined": 7.0}
    assert verdict.winner == "tie"


def test_bias_smaller_than_the_difference_keeps_the_verdict_and_flags_the_flip():
    # draft first: 7 vs 6 (bias wins); refined first: 9 vs 5
    verdict = balance(LABELS, out(7, 6), out(9, 5))
    assert verdict.verdicts == ["draft", "refined"]
    assert verdict.order_changed is True
    assert verdict.scores == {"draft": 6.0, "refined": 7.5}
    assert verdict.winner == "refined"


def test_equal_scores_in_one_order_is_a_tie_verdict_for_that_order():
    verdict = balance(LABELS, out(6, 6, 0.2), out(7, 6, 0.6))
    assert verdict.verdicts == ["tie", "refined"]
    assert verdict.order_changed is True
    assert verdict.scores == {"draft": 6.0, "refined": 6.5}
    assert verdict.winner == "refined"
    assert verdict.certainty == pytest.approx(0.4)


def test_averages_can_be_halves_and_ties_exact():
    verdict = balance(LABELS, out(5, 4), out(5, 4))
    assert verdict.scores == {"draft": 4.5, "refined": 4.5}
    assert verdict.winner == "tie"


# ── over HTTP ────────────────────────────────────────────────────────────────────────


def positions(call) -> tuple[str, str]:
    text = str(call.messages[1]["content"])
    first = re.search(r'<reply id="1">\n(.*?)\n</reply>', text, re.S).group(1)
    second = re.search(r'<reply id="2">\n(.*?)\n</reply>', text, re.S).group(1)
    return first, second


def prefers(better: str, certainty: float = 0.9):
    """A scripted judge that scores `better` 8 and the other reply 3, wherever it is shown."""

    def answer(call):
        first, second = positions(call)
        return {
            "evidence": f"{better} is right",
            "reply_1_score": 8 if first == better else 3,
            "reply_2_score": 8 if second == better else 3,
            "certainty": certainty,
        }

    return answer


def first_position(call):
    return {"evidence": "the first one", "reply_1_score": 9, "reply_2_score": 4, "certainty": 0.5}


@pytest.fixture
def judge(http_config):
    return make_chat_model("judge-model", http_config())


async def test_both_orders_are_sent_concurrently(provider, judge):
    provider.latency_s = 0.2
    provider.set_default("pairwise_judge", prefers("opened in 1889"))
    verdict = await compare(judge, CONTEXT, "opened in 1899", "opened in 1889", labels=LABELS)
    calls = provider.calls_for("pairwise_judge")
    assert sorted(positions(c) for c in calls) == [
        ("opened in 1889", "opened in 1899"),
        ("opened in 1899", "opened in 1889"),
    ]
    assert provider.max_in_flight("pairwise_judge") == 2
    assert verdict.winner == "refined" and verdict.order_changed is False
    assert verdict.scores == {"draft": 3.0, "refined": 8.0}
    assert verdict.certainty == pytest.approx(0.9)
    # untrusted replies only in the user message
    assert "1889" not in str(calls[0].messages[0]["content"])


async def test_position_biased_judge_over_http(provider, judge):
    provider.set_default("pairwise_judge", first_position)
    verdict = await compare(judge, CONTEXT, "one", "two", labels=LABELS)
    assert verdict.order_changed is True
    assert verdict.winner == "tie"
    assert sorted(verdict.verdicts) == ["draft", "refined"]


async def test_a_failing_order_raises_its_own_error(provider, judge):
    provider.set_default("pairwise_judge", prefers("two"))
    provider.fail_next(1, status=400, agent="pairwise_judge")
    with pytest.raises(Exception) as info:
        await compare(judge, CONTEXT, "one", "two", labels=LABELS)
    assert not isinstance(info.value, ExceptionGroup)
    assert "400" in str(info.value) or "Injected" in str(info.value)


async def test_scores_out_of_range_do_not_parse(provider, judge):
    bad = {"evidence": "x", "reply_1_score": 11, "reply_2_score": 3, "certainty": 0.5}
    provider.set_default("pairwise_judge", bad)
    with pytest.raises(Exception, match="did not parse"):
        await compare(judge, CONTEXT, "one", "two", labels=LABELS)


@pytest.mark.parametrize("labels", [("same", "same"), ("tie", "other")])
async def test_labels_must_be_distinct_and_not_tie(judge, labels):
    with pytest.raises(ValueError, match="labels"):
        await compare(judge, CONTEXT, "one", "two", labels=labels)
