"""A client's `response_format`: which formats are taken, and why a reply does not meet one."""

from __future__ import annotations

import pytest

from redraft.response_format import check_format, format_problem, wants_json

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}


@pytest.mark.parametrize(
    "value",
    [None, {"type": "text"}, {}, {"type": "json_object"}, SCHEMA_FORMAT],
)
def test_openais_formats_are_taken_as_they_are(value: dict | None) -> None:
    assert check_format(value) is value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"type": "xml"}, "type must be text, json_object or json_schema"),
        ({"type": "json_schema"}, "needs a `name` and a `schema`"),
        ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "needs a `name`"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": []}},
            "must be a JSON schema object",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}},
            "not a valid JSON schema",
        ),
    ],
)
def test_a_bad_format_is_refused_naming_what_is_wrong(value: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_format(value)


def test_only_the_json_formats_want_json() -> None:
    assert [wants_json(v) for v in (None, {}, {"type": "text"})] == [False, False, False]
    assert wants_json({"type": "json_object"}) and wants_json(SCHEMA_FORMAT)


def test_no_problem_when_no_json_is_asked_for() -> None:
    assert format_problem("not json at all", None) is None
    assert format_problem("not json at all", {"type": "text"}) is None


def test_json_mode_needs_an_object() -> None:
    assert format_problem('{"city": "Paris"}', {"type": "json_object"}) is None
    assert format_problem("[1, 2]", {"type": "json_object"}) == "is JSON but not an object"


def test_invalid_json_is_named_with_where_it_broke() -> None:
    assert format_problem('{"city": ', {"type": "json_object"}) == (
        "is not valid JSON (Expecting value at character 9)"
    )


def test_json_python_cannot_convert_is_a_problem_not_a_crash() -> None:
    problem = format_problem("1" * 5_000, {"type": "json_object"})

    assert problem is not None
    assert problem.startswith("is not valid JSON (Exceeds the limit")


def test_a_schema_names_where_the_reply_misses_it() -> None:
    assert format_problem('{"city": "Paris"}', SCHEMA_FORMAT) is None
    assert format_problem('{"city": 3}', SCHEMA_FORMAT) == (
        "does not match the schema at city: 3 is not of type 'string'"
    )
    assert format_problem("{}", SCHEMA_FORMAT) == (
        "does not match the schema at the top level: 'city' is a required property"
    )


def test_a_schema_format_without_a_schema_takes_any_json() -> None:
    assert format_problem("[1]", {"type": "json_schema", "json_schema": {"name": "x"}}) is None
