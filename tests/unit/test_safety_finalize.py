"""The safety critic's `finalize`: the rules that hold whatever the model answered (ask only
for what is unknown, within the question cap, when the background is incomplete; never revise
below high risk outside the sensitive domains; a crisis message only when one was written)."""

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
