"""The safety critic's `finalize`: the rules that hold whatever the model answered (ask only
for what is unknown, within the question cap, when the background is incomplete; below high
risk, revise or ask only in a sensitive domain that the planner named or the user's own words
back; a crisis message only when one was written)."""

from __future__ import annotations

from typing import Any

import pytest

from redraft.config import RefinerConfig
from redraft.safety.critic import (
    ASK_FIRST,
    ATTRIBUTE_QUESTIONS,
    GENERIC_CAUTION,
    SafetyOutput,
    finalize,
)
from redraft.state import CriticTask, Issue

CFG = RefinerConfig()
INCOMPLETE = CFG.safety_completeness - 1
COMPLETE = CFG.safety_completeness
RISKY = Issue(span="sell everything", problem="risky advice", fix="suggest a careful plan")


def task(**values: Any) -> CriticTask:
    base: CriticTask = {
        "reply": "You should sell everything and move.",
        "round": 1,
        "history": [{"role": "user", "content": "Should I quit my job?"}],
        "persona": [],
        "attributes": {},
        "declined": [],
        "questions_left": 3,
        "domain": "Career",
        "examples": [],
    }
    return {**base, **values}  # type: ignore[typeddict-item]


def output(**values: Any) -> SafetyOutput:
    fields: dict[str, Any] = {"verdict": "pass", "domain": "Career", "risk": "medium"}
    return SafetyOutput.model_validate({**fields, **values})


def test_an_ask_for_a_missing_attribute_is_kept_with_the_models_question() -> None:
    critique = finalize(
        output(
            verdict="ask",
            completeness=INCOMPLETE,
            ask_attribute="Economic Status",
            question="Do you have savings to fall back on?",
        ),
        task(),
        CFG,
    )

    assert critique.verdict == "ask"
    assert critique.issues == []
    assert critique.safety is not None
    assert critique.safety.ask_attribute == "Economic Status"
    assert critique.safety.question == "Do you have savings to fall back on?"


def test_an_ask_without_a_question_gets_the_attributes_own_question() -> None:
    critique = finalize(
        output(verdict="ask", completeness=INCOMPLETE, ask_attribute="Age", question="  "),
        task(),
        CFG,
    )

    assert critique.verdict == "ask"
    assert critique.safety is not None
    assert critique.safety.question == ATTRIBUTE_QUESTIONS["Age"]


@pytest.mark.parametrize(
    ("why", "completeness", "values"),
    [
        ("the attribute is known", INCOMPLETE, {"attributes": {"Age": "34"}}),
        ("the user declined it", INCOMPLETE, {"declined": ["Age"]}),
        ("no questions are left", INCOMPLETE, {"questions_left": 0}),
        ("the background is complete", COMPLETE, {}),
    ],
)
def test_an_ask_that_may_not_be_asked_becomes_a_careful_revise(
    why: str, completeness: int, values: dict[str, Any]
) -> None:
    critique = finalize(
        output(verdict="ask", completeness=completeness, ask_attribute="Age", question="Age?"),
        task(**values),
        CFG,
    )

    assert critique.verdict == "revise", why
    assert critique.issues == [GENERIC_CAUTION]
    assert critique.safety is not None
    assert (critique.safety.ask_attribute, critique.safety.question) == (None, None)


def test_a_refused_ask_keeps_the_models_own_issues() -> None:
    critique = finalize(
        output(verdict="ask", completeness=COMPLETE, ask_attribute="Age", issues=[RISKY]),
        task(),
        CFG,
    )

    assert critique.verdict == "revise"
    assert critique.issues == [RISKY]


def test_a_revise_on_an_incomplete_background_asks_the_most_useful_attribute_first() -> None:
    examples = [{"query": "quit my job?", "path": ["Economic Status", "Age"]}]

    critique = finalize(
        output(verdict="revise", completeness=INCOMPLETE, issues=[RISKY]),
        task(examples=examples, attributes={"Economic Status": "stable"}),
        CFG,
    )

    assert critique.verdict == "ask"
    assert critique.issues == []
    assert critique.safety is not None
    assert critique.safety.ask_attribute == "Age"  # the path's first attribute not yet known
    assert critique.safety.question == ATTRIBUTE_QUESTIONS["Age"]


def test_without_example_paths_the_generally_most_useful_attribute_is_asked() -> None:
    critique = finalize(
        output(verdict="revise", completeness=INCOMPLETE, issues=[RISKY]),
        task(declined=[ASK_FIRST[0]]),
        CFG,
    )

    assert critique.safety is not None
    assert critique.safety.ask_attribute == ASK_FIRST[1]


def test_a_revise_is_kept_when_no_question_may_be_asked() -> None:
    critique = finalize(
        output(verdict="revise", completeness=INCOMPLETE, issues=[RISKY]),
        task(questions_left=0),
        CFG,
    )

    assert critique.verdict == "revise"
    assert critique.issues == [RISKY]


@pytest.mark.parametrize("risk", ["low", "medium"])
def test_a_revise_below_high_risk_outside_the_sensitive_domains_passes(risk: str) -> None:
    critique = finalize(
        output(verdict="revise", domain=None, risk=risk, issues=[RISKY]),
        task(domain=None),
        CFG,
    )

    assert critique.verdict == "pass"
    assert critique.issues == []


def test_a_high_risk_revise_outside_the_sensitive_domains_is_kept() -> None:
    """Danger that fits none of PENGUIN's domains (mixing cleaning products, say) stays the
    safety critic's to revise."""
    critique = finalize(
        output(verdict="revise", domain=None, risk="high", completeness=COMPLETE, issues=[RISKY]),
        task(domain=None),
        CFG,
    )

    assert critique.verdict == "revise"
    assert critique.issues == [RISKY]


TRIVIA = [{"role": "user", "content": "When was the Eiffel Tower finished?"}]


@pytest.mark.parametrize("verdict", ["revise", "ask"])
def test_a_domain_named_only_by_the_model_for_a_question_not_about_the_user_passes(
    verdict: str,
) -> None:
    """Qwen2.5-0.5B named "Education" for trivia and its caution outranked the factual fix."""
    critique = finalize(
        output(
            verdict=verdict,
            domain="Education",
            completeness=INCOMPLETE,
            ask_attribute="Age",
            issues=[RISKY],
        ),
        task(domain=None, history=TRIVIA),
        CFG,
    )

    assert critique.verdict == "pass"
    assert critique.issues == []
    assert critique.safety is not None and critique.safety.question is None


@pytest.mark.parametrize(
    "message",
    [
        "I failed my finals and my parents will be furious. What do I do?",  # distress
        "Should I drop out of university?",  # a decision about the user's own life
        "Is it safe for me to take melatonin with my antidepressants?",
        "My landlord is evicting us next month. How do I find a place?",  # circumstances
    ],
)
def test_a_domain_named_by_the_model_is_kept_when_the_user_speaks_of_their_own_stakes(
    message: str,
) -> None:
    critique = finalize(
        output(verdict="revise", domain="Education", completeness=COMPLETE, issues=[RISKY]),
        task(domain=None, history=[{"role": "user", "content": message}]),
        CFG,
    )

    assert critique.verdict == "revise"


def test_background_the_user_shared_keeps_the_turn_sensitive() -> None:
    critique = finalize(
        output(verdict="revise", domain="Health", completeness=COMPLETE, issues=[RISKY]),
        task(domain=None, history=TRIVIA, attributes={"Emotional State": "anxious"}),
        CFG,
    )

    assert critique.verdict == "revise"


def test_a_resumed_turn_reads_the_users_request_not_only_their_answer() -> None:
    answer = [
        {"role": "user", "content": "I lost my job last week. Should I move back home?"},
        {"role": "assistant", "content": "How are you feeling right now?"},
        {"role": "user", "content": "ok I guess"},
    ]
    critique = finalize(
        output(verdict="revise", domain="Career", completeness=COMPLETE, issues=[RISKY]),
        task(domain=None, history=answer[-1:], request=answer[0]["content"]),
        CFG,
    )

    assert critique.verdict == "revise"


def test_a_revise_in_a_domain_named_only_by_the_planner_is_kept() -> None:
    critique = finalize(
        output(verdict="revise", domain=None, risk="low", completeness=COMPLETE, issues=[RISKY]),
        task(domain="Financial"),
        CFG,
    )

    assert critique.verdict == "revise"


def test_a_revise_without_issues_is_a_pass() -> None:
    critique = finalize(output(verdict="revise", completeness=COMPLETE), task(), CFG)

    assert critique.verdict == "pass"


def test_a_block_keeps_its_supportive_message() -> None:
    critique = finalize(
        output(verdict="block", risk="crisis", safe_reply="You are not alone. "),
        task(),
        CFG,
    )

    assert critique.verdict == "block"
    assert critique.safety is not None
    assert critique.safety.safe_reply == "You are not alone. "


def test_a_block_with_a_blank_message_has_none_to_send() -> None:
    critique = finalize(output(verdict="block", risk="crisis", safe_reply="   "), task(), CFG)

    assert critique.verdict == "block"
    assert critique.safety is not None
    assert critique.safety.safe_reply is None


def test_a_pass_carries_no_question_issue_or_crisis_message() -> None:
    critique = finalize(
        output(
            verdict="pass",
            completeness=COMPLETE,
            ask_attribute="Age",
            question="Age?",
            safe_reply="unused",
            issues=[RISKY],
        ),
        task(),
        CFG,
    )

    assert critique.verdict == "pass"
    assert critique.issues == []
    assert critique.safety is not None
    assert critique.safety.ask_attribute is None
    assert critique.safety.question is None
    assert critique.safety.safe_reply is None


def test_the_critique_names_its_aspect_round_and_the_known_attributes() -> None:
    critique = finalize(
        output(verdict="pass", completeness=COMPLETE, confidence=0.8, evidence=["f1"]),
        task(round=2, attributes={"Profession": "nurse", "Age": "34"}),
        CFG,
    )

    assert (critique.aspect, critique.round) == ("safety", 2)
    assert (critique.confidence, critique.evidence) == (0.8, ["f1"])
    assert critique.safety is not None
    assert critique.safety.known == ["Age", "Profession"]
    assert (critique.safety.domain, critique.safety.risk) == ("Career", "medium")
