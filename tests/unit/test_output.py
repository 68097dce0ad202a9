"""Reading a model's output into its schema: mended where the meaning is clear (fences, chatter,
an enum in another case, a percent confidence), refused where it is not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from redraft.llm.output import first_json_object, read_output
from redraft.safety.critic import SafetyOutput
from redraft.state import CriticOutput, Issue

ISSUE = {"span": "1900", "problem": "p1 says 1889", "fix": "1889"}


def test_plain_json_reads_as_it_is() -> None:
    output = read_output(CriticOutput, '{"verdict": "pass", "confidence": 0.9}')

    assert output == CriticOutput(verdict="pass", confidence=0.9)


def test_fenced_json_reads() -> None:
    text = '```json\n{"verdict": "revise", "issues": [{"span": "1900", "problem": "p1 says 1889",'
    text += ' "fix": "1889"}]}\n```'

    output = read_output(CriticOutput, text)

    assert output.verdict == "revise"
    assert output.issues == [Issue(**ISSUE)]


def test_the_first_object_in_chatty_output_reads() -> None:
    text = (
        'Sure! {not json} Here it is: {"verdict": "pass"} and {"verdict": "revise"}. Hope it helps'
    )

    assert read_output(CriticOutput, text).verdict == "pass"


def test_output_without_a_json_object_is_refused() -> None:
    with pytest.raises(ValueError, match="no JSON object"):
        read_output(CriticOutput, "I think the reply is fine.")
    with pytest.raises(ValueError, match="no JSON object"):
        first_json_object('["a list", "is not an object"]')


@pytest.mark.parametrize("written", ["Revise", "REVISE", " revise "])
def test_an_enum_in_another_case_or_with_spaces_reads(written: str) -> None:
    assert read_output(CriticOutput, {"verdict": written}).verdict == "revise"


def test_an_unknown_enum_value_is_refused() -> None:
    with pytest.raises(ValidationError):
        read_output(CriticOutput, {"verdict": "maybe"})


@pytest.mark.parametrize(("written", "read"), [(85, 0.85), (100, 1.0), ("85%", 0.85), (0.7, 0.7)])
def test_a_confidence_in_percent_reads_on_the_zero_to_one_scale(
    written: object, read: float
) -> None:
    output = read_output(CriticOutput, {"verdict": "pass", "confidence": written})

    assert output.confidence == pytest.approx(read)


def test_a_confidence_past_one_hundred_is_refused() -> None:
    with pytest.raises(ValidationError):
        read_output(CriticOutput, {"verdict": "pass", "confidence": 150})


def test_a_field_name_in_another_case_reads() -> None:
    assert read_output(CriticOutput, {"Verdict": "pass"}).verdict == "pass"


def test_a_null_optional_list_takes_its_default() -> None:
    output = read_output(CriticOutput, {"verdict": "pass", "issues": None, "evidence": None})

    assert (output.issues, output.evidence) == ([], [])


def test_a_single_object_where_a_list_is_expected_reads_as_a_list() -> None:
    output = read_output(CriticOutput, {"verdict": "revise", "issues": ISSUE})

    assert output.issues == [Issue(**ISSUE)]


def test_whole_numbers_read_from_floats_and_strings_but_fractions_do_not() -> None:
    assert read_output(SafetyOutput, {"verdict": "pass", "completeness": 3.0}).completeness == 3
    assert read_output(SafetyOutput, {"verdict": "pass", "completeness": "4"}).completeness == 4
    with pytest.raises(ValidationError):
        read_output(SafetyOutput, {"verdict": "pass", "completeness": 3.5})


def test_mending_reaches_nested_enums_and_keeps_nulls_that_are_allowed() -> None:
    output = read_output(
        SafetyOutput,
        '{"verdict": "Ask", "domain": "career", "ask_attribute": "emotional state", '
        '"question": null, "risk": "High"}',
    )

    assert (output.verdict, output.domain, output.risk) == ("ask", "Career", "high")
    assert (output.ask_attribute, output.question) == ("Emotional State", None)


def test_a_missing_required_field_is_not_invented() -> None:
    with pytest.raises(ValidationError):
        read_output(CriticOutput, {"confidence": 1})
