"""The coherence critic's `finalize`: a contradiction counts only when its quote is found in an
earlier assistant turn, which the critique then cites by number."""

from __future__ import annotations

from typing import Any

from redraft.agents.coherence import CoherenceOutput, finalize
from redraft.config import RefinerConfig
from redraft.state import CriticTask, Issue

CFG = RefinerConfig()
HISTORY = [
    {"role": "user", "content": "When does the museum open?"},  # turn 1
    {"role": "assistant", "content": "It opens at 9 am, every day."},  # turn 2
    {"role": "user", "content": "I heard it opens at noon. And on Sundays?"},  # turn 3
]


def task(**values: Any) -> CriticTask:
    base: CriticTask = {
        "reply": "It opens at 10 am on Sundays.",
        "round": 1,
        "history": HISTORY,
    }
    return {**base, **values}  # type: ignore[typeddict-item]


def output(*contradictions: dict[str, Any], **values: Any) -> CoherenceOutput:
    fields = {"verdict": "pass", "contradictions": contradictions}
    return CoherenceOutput.model_validate({**fields, **values})


def contradiction(turn: int, quote: str, span: str = "opens at 10 am") -> dict[str, Any]:
    return {"turn": turn, "quote": quote, "span": span}


def test_a_quoted_contradiction_is_cited_by_turn_and_fixed() -> None:
    critique = finalize(output(contradiction(2, "It opens at 9 am")), task(), CFG)

    assert critique.verdict == "revise"
    assert critique.evidence == ['turn 2: "It opens at 9 am"']
    assert critique.issues == [
        Issue(
            span="opens at 10 am",
            problem='contradicts what the assistant said earlier (turn 2 said: "It opens at 9 am")',
            fix="keep to what turn 2 said, or say openly that this corrects it",
        )
    ]


def test_quotes_match_ignoring_case_spacing_and_punctuation() -> None:
    critique = finalize(output(contradiction(2, '"it  OPENS at 9 am."')), task(), CFG)

    assert critique.verdict == "revise"
    assert critique.evidence == ['turn 2: ""it  OPENS at 9 am.""']


def test_a_wrong_turn_number_is_corrected_to_the_turn_that_says_it() -> None:
    critique = finalize(output(contradiction(7, "every day")), task(), CFG)

    assert critique.evidence == ['turn 2: "every day"']


def test_a_quote_found_only_in_a_user_turn_is_invented() -> None:
    invented = contradiction(3, "it opens at noon")
    issue = Issue(span="opens at 10 am", problem="contradicts turn 3", fix="say noon")

    critique = finalize(
        output(invented, verdict="revise", issues=[issue], evidence=["it opens at noon"]),
        task(),
        CFG,
    )

    assert critique.verdict == "pass"
    assert critique.issues == []
    assert critique.evidence == []


def test_an_invented_contradiction_drops_only_the_issue_resting_on_it() -> None:
    unanswered = Issue(span="on Sundays", problem="vague", fix="give Sunday hours")
    resting = Issue(span="opens at 10 am", problem="contradiction", fix="say 9 am")

    critique = finalize(
        output(
            contradiction(2, "closed on Mondays"),
            verdict="revise",
            issues=[unanswered, resting],
        ),
        task(),
        CFG,
    )

    assert critique.verdict == "revise"
    assert critique.issues == [unanswered]


def test_a_models_issue_on_the_contradiction_gets_the_quote_in_its_problem() -> None:
    issue = Issue(span="It opens at 10 am", problem="Conflicts with earlier hours.", fix="9 am")

    critique = finalize(
        output(contradiction(2, "It opens at 9 am"), verdict="revise", issues=[issue]),
        task(),
        CFG,
    )

    assert [i.problem for i in critique.issues] == [
        'Conflicts with earlier hours. (turn 2 said: "It opens at 9 am")'
    ]


def test_a_problem_that_already_quotes_the_turn_is_left_as_it_is() -> None:
    issue = Issue(span="opens at 10 am", problem='Turn 2 said "it opens at 9 am".', fix="9 am")

    critique = finalize(
        output(contradiction(2, "it opens at 9 am"), verdict="revise", issues=[issue]),
        task(),
        CFG,
    )

    assert critique.issues == [issue]


def test_without_contradictions_the_verdict_decides() -> None:
    issue = Issue(span="on Sundays", problem="the question of noon is unanswered", fix="answer")

    passed = finalize(output(issues=[issue]), task(), CFG)
    revised = finalize(output(verdict="revise", issues=[issue], evidence=["turn 3"]), task(), CFG)

    assert (passed.verdict, passed.issues) == ("pass", [])
    assert (revised.verdict, revised.issues, revised.evidence) == ("revise", [issue], ["turn 3"])
    assert (revised.aspect, revised.round) == ("coherence", 1)
