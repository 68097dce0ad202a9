"""Parsing untrusted JSON: what `json.loads` cannot take safely is a JSONLimitError, a
ValueError naming the problem, never a RecursionError or a silent choice."""

from __future__ import annotations

import pytest

from redraft.parsing import (
    MAX_NUMBER_DIGITS,
    JSONLimitError,
    JSONNestingError,
    excerpt,
    parse_json,
    printable,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        (b'{"a": 1}', {"a": 1}),
        (bytearray(b"[]"), []),
    ],
)
def test_ordinary_json_parses_from_text_or_bytes(
    text: str | bytes | bytearray, value: object
) -> None:
    assert parse_json(text) == value


def test_json_nested_too_deeply_is_a_nesting_error() -> None:
    with pytest.raises(JSONNestingError, match="nested too deeply"):
        parse_json("[" * 100_000)


def test_a_number_too_long_is_refused() -> None:
    assert parse_json("9" * MAX_NUMBER_DIGITS) == int("9" * MAX_NUMBER_DIGITS)
    assert parse_json("-" + "9" * MAX_NUMBER_DIGITS) == -int("9" * MAX_NUMBER_DIGITS)
    with pytest.raises(JSONLimitError, match=f"at most {MAX_NUMBER_DIGITS}"):
        parse_json("9" * (MAX_NUMBER_DIGITS + 1))
    with pytest.raises(JSONLimitError, match="characters"):
        parse_json("0." + "1" * MAX_NUMBER_DIGITS)


@pytest.mark.parametrize("text", ["1e999", "-1e999", "[NaN]", "Infinity", "-Infinity"])
def test_numbers_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(JSONLimitError, match="invalid JSON"):
        parse_json(text)


def test_a_duplicate_key_is_refused_at_any_depth() -> None:
    with pytest.raises(JSONLimitError, match="duplicate key 'a'"):
        parse_json('{"outer": {"a": 1, "a": 2}}')


def test_malformed_json_is_still_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_json('{"a": }')


def test_limit_errors_are_value_errors() -> None:
    assert issubclass(JSONNestingError, JSONLimitError)
    assert issubclass(JSONLimitError, ValueError)


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    assert printable("name\x1b[31m\nnext") == "name\\x1b[31m\\nnext"
    assert printable("Zoë ✓") == "Zoë ✓"


def test_excerpt_cuts_and_escapes() -> None:
    assert excerpt("a" * 50, limit=10) == "a" * 10 + "…"
    assert excerpt("short") == "short"
    assert excerpt("\x00" * 3, limit=2) == "\\x00\\x00…"
