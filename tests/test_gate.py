"""The regression gate (`gate=True`), end to end over HTTP: keep the draft unless refined wins."""

from __future__ import annotations

import re

import pytest

from redraft import Refiner, ReplyToken
from tests.conftest import PASS, plan, revise, user

DRAFT = "The Eiffel Tower was finished in 1899."
REFINED = "The Eiffel Tower was finished in 1889."
REQUEST = {
    "messages": [user("When was the Eiffel Tower finished?")],
    "knowledge": ["The Eiffel Tower was completed in 1889."],
}


def shown(call) -> tuple[str, str]:
    text = str(call.messages[1]["content"])
    return tuple(re.findall(r'<reply id="[12]">\n(.*?)\n</reply>', text, re.S))


def judge_preferring(better: str, certainty: float = 0.9):
    def answer(call):
        first, second = shown(call)
        return {
            "evidence": "compared",
            "reply_1_score": 8 if first == better else 4,
            "reply_2_score": 8 if second == better else 4,
            "certainty": certainty,
        }

    return answer


def first_is_better(call):
    return {"evidence": "first", "reply_1_score": 7, "reply_2_score": 5, "certainty": 0.6}


@pytest.fixture
def refining(provider):
    """A turn whose factuality critic asks for a fix and whose editor applies it."""
    provider.script("responder", DRAFT)
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1899", "1889"))
    provider.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "year"}], "reply": REFINED}
    )
    return provider


async def run(config, request=REQUEST):
    async with Refiner(config) as refiner:
        return await refiner.arefine(request)


async def test_gate_off_calls_no_judge(refining, http_config):
    result = await run(http_config(planner="llm"))
    assert result.reply == REFINED and result.gate is None
    assert refining.calls_for("pairwise_judge") == []


async def test_refined_reply_kept_when_it_wins(refining, http_config):
    refining.latency_s = 0.1
    refining.set_default("pairwise_judge", judge_preferring(REFINED))
    result = await run(http_config(planner="llm", gate=True))
    assert result.reply == REFINED and result.changed
    assert result.gate.kept == "refined"
    verdict = result.gate.verdict
    assert verdict.winner == "refined" and verdict.scores == {"draft": 4.0, "refined": 8.0}
    assert verdict.verdicts == ["refined", "refined"] and not verdict.order_changed
    assert verdict.certainty == pytest.approx(0.9)
    # both orders, concurrently
    calls = refining.calls_for("pairwise_judge")
    assert sorted(shown(c) for c in calls) == sorted([(DRAFT, REFINED), (REFINED, DRAFT)])
    assert refining.max_in_flight("pairwise_judge") == 2
    assert result.usage.by_agent["pairwise_judge"].calls == 2
    assert "gate" in result.timings


async def test_draft_kept_when_it_wins(refining, http_config):
    refining.set_default("pairwise_judge", judge_preferring(DRAFT))
    result = await run(http_config(planner="llm", gate=True))
    assert result.reply == DRAFT and result.draft == DRAFT
    assert result.changed is False and result.changes == []
    assert result.gate.kept == "draft" and result.gate.verdict.winner == "draft"
    # the critique that was not applied is still reported
    assert result.critiques[0].verdict == "revise"


async def test_position_bias_is_a_tie_and_keeps_the_draft(refining, http_config):
    refining.set_default("pairwise_judge", first_is_better)
    result = await run(http_config(planner="llm", gate=True))
    assert result.reply == DRAFT
    verdict = result.gate.verdict
    assert verdict.winner == "tie" and verdict.order_changed
    assert verdict.scores == {"draft": 6.0, "refined": 6.0}


async def test_unchanged_reply_calls_no_judge(provider, http_config):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", PASS)
    result = await run(http_config(planner="llm", gate=True))
    assert result.gate is None and not result.changed
    assert provider.calls_for("pairwise_judge") == []


async def test_judge_failure_keeps_the_refined_reply(refining, http_config):
    refining.set_default("pairwise_judge", "not json at all")
    result = await run(http_config(planner="llm", gate=True))
    assert result.reply == REFINED
    assert result.gate.kept == "refined" and result.gate.verdict is None
    assert [d.step for d in result.degraded] == ["gate"]


async def test_judge_model_is_its_own_role(refining, http_config):
    refining.set_default("pairwise_judge", judge_preferring(REFINED))
    await run(http_config(planner="llm", gate=True, judge_model="judge-large"))
    assert {c.model for c in refining.calls_for("pairwise_judge")} == {"judge-large"}
    assert {c.model for c in refining.calls_for("editor")} == {"gpt-4o-mini"}


@pytest.mark.parametrize("strategy", ["sequential", "self_refine"])
async def test_other_rewriting_strategies_are_gated(provider, http_config, strategy):
    provider.script("responder", DRAFT)
    provider.script("planner", plan("factuality"))
    provider.script("factuality_refiner", {**revise("1899", "1889"), "reply": REFINED})
    provider.script("self_refine", revise("1899", "1889"))
    provider.script("editor", {"changes": [], "reply": REFINED})
    provider.set_default("pairwise_judge", judge_preferring(DRAFT))
    result = await run(http_config(planner="llm", gate=True, strategy=strategy))
    assert result.reply == DRAFT and result.gate.kept == "draft"
    assert len(provider.calls_for("pairwise_judge")) == 2


async def test_streamed_tokens_spell_the_reply_the_gate_kept(refining, http_config):
    refining.set_default("pairwise_judge", judge_preferring(DRAFT))
    async with Refiner(http_config(planner="llm", gate=True)) as refiner:
        events = [e async for e in refiner.astream(REQUEST)]
    text = ""
    for token in (e for e in events if isinstance(e, ReplyToken)):
        text = "" if token.reset else text + token.text
    assert text == DRAFT == events[-1].result.reply
    assert not any(isinstance(e, ReplyToken) and REFINED in e.text for e in events)


CAREFUL = "Losing a job is hard. Take a breath before deciding anything big."
SENSITIVE = {"messages": [user("I lost my job today. Should I just move abroad tomorrow?")]}
SAFETY_REVISE = {
    **revise("move abroad tomorrow", "suggest taking time first", "risky for this user"),
    "domain": "Career",
    "risk": "high",
    "completeness": 4,
}


@pytest.mark.parametrize("safety", [SAFETY_REVISE, "not json at all"], ids=["revise", "fallback"])
async def test_a_safety_change_is_never_undone_by_the_gate(provider, http_config, safety):
    provider.script("responder", "Sure, move abroad tomorrow!")
    provider.script("planner", plan("safety"))
    provider.set_default("safety", safety)
    provider.script(
        "editor", {"changes": [{"aspect": "safety", "change": "care"}], "reply": CAREFUL}
    )
    provider.set_default("pairwise_judge", judge_preferring("Sure, move abroad tomorrow!"))
    result = await run(http_config(gate=True), SENSITIVE)
    assert result.reply == CAREFUL and result.changed
    assert result.gate is None
    assert provider.calls_for("pairwise_judge") == []
    assert next(c for c in result.critiques if c.aspect == "safety").verdict == "revise"


async def test_a_sequential_safety_rewrite_is_never_undone_by_the_gate(provider, http_config):
    provider.script("responder", "Sure, move abroad tomorrow!")
    provider.script("planner", plan("safety"))
    provider.script("safety_refiner", {**SAFETY_REVISE, "reply": CAREFUL})
    provider.set_default("pairwise_judge", first_is_better)  # a tie
    result = await run(http_config(gate=True, strategy="sequential"), SENSITIVE)
    assert result.reply == CAREFUL and result.gate is None
    assert provider.calls_for("pairwise_judge") == []


async def test_a_kept_draft_cites_only_what_the_draft_rests_on(provider, http_config):
    draft = "The Eiffel Tower in Paris was finished in 1899."
    provider.script("responder", draft)
    provider.script("planner", plan("factuality"))
    provider.script(
        "factuality",
        {
            **revise("finished in 1899", "1889", evidence=["p1"]),
            "claims": [
                {"text": "The Eiffel Tower in Paris", "label": "supported", "passages": ["p2"]},
                {"text": "finished in 1899", "label": "contradicted", "passages": ["p1"]},
            ],
        },
    )
    provider.script("editor", {"changes": [], "reply": draft.replace("1899", "1889")})
    provider.set_default("pairwise_judge", judge_preferring(draft))
    request = {**REQUEST, "knowledge": [REQUEST["knowledge"][0], "The Eiffel Tower is in Paris."]}
    result = await run(http_config(gate=True), request)
    assert result.reply == draft and result.gate.kept == "draft"
    # p1 only supported the correction that was not sent
    assert [c.id for c in result.citations] == ["p2"]


async def test_a_passing_safety_check_does_not_exempt_other_edits(refining, http_config):
    refining.script("planner", plan("factuality", "safety"))
    refining.set_default("safety", {**SAFETY_REVISE, "verdict": "pass", "issues": []})
    refining.set_default("pairwise_judge", judge_preferring(DRAFT))
    result = await run(http_config(gate=True))
    assert result.reply == DRAFT and result.gate.kept == "draft"
    assert len(refining.calls_for("pairwise_judge")) == 2
