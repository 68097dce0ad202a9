"""Request limits: identifiers every store can key by, a size for every untrusted text, replies
bounded, and validation errors named briefly."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, Field, ValidationError

from redraft.request_limits import (
    DEFAULTS,
    MAX_ERRORS_SHOWN,
    MAX_NAME_CHARS,
    ReplyTooLong,
    bounded,
    check_identifier,
    check_reply,
    check_texts,
    check_total,
    draft_chars,
    field_errors,
    limit,
)
from redraft.state import DraftReply


def test_an_identifier_without_control_characters_is_kept() -> None:
    assert check_identifier("user-42 Zoë ✓") == "user-42 Zoë ✓"


@pytest.mark.parametrize(
    ("value", "named"), [("ab\x00c", "U+0000 at position 2"), ("\x1b[31m", "U+001B at position 0")]
)
def test_an_identifier_with_a_control_character_is_refused_naming_it(
    value: str, named: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        check_identifier(value)


def test_texts_within_the_limits_pass() -> None:
    check_texts(["ab", "cd"], what="fact", most=2, most_chars=2)


def test_too_many_texts_are_refused_with_the_count() -> None:
    with pytest.raises(ValueError, match="at most 2 facts are accepted, got 3"):
        check_texts(["a", "b", "c"], what="fact", most=2, most_chars=10)


def test_a_text_too_long_is_named_by_its_index() -> None:
    with pytest.raises(ValueError, match="passage 1 has 4 characters; at most 3 are accepted"):
        check_texts(["abc", "abcd"], what="passage", most=5, most_chars=3)


def test_a_limit_comes_from_the_context_else_the_default() -> None:
    assert limit(None, "max_passages") == DEFAULTS["max_passages"]
    assert limit({"max_passages": 3}, "max_passages") == 3
    assert limit({"max_draft_chars": 3}, "max_passages") == DEFAULTS["max_passages"]


def test_the_total_is_checked_against_the_contexts_limit() -> None:
    check_total(10, {"max_request_chars": 10})
    with pytest.raises(ValueError, match="11 characters together; at most 10"):
        check_total(11, {"max_request_chars": 10})
    check_total(DEFAULTS["max_request_chars"], None)


def test_a_draft_is_measured_as_text_or_as_a_message() -> None:
    assert draft_chars("hello") == 5
    assert draft_chars(DraftReply(content="hi there")) == 8
    assert draft_chars(DraftReply(content=None)) == 0
    assert draft_chars(None) == 0


def test_a_reply_past_the_limit_is_refused() -> None:
    check_reply("abc", 3, "draft")
    check_reply("abcdef", None, "draft")
    check_reply(None, 3, "draft")
    with pytest.raises(ReplyTooLong, match="the model's rewrite has 4 characters; at most 3"):
        check_reply("abcd", 3, "rewrite")


def test_bounded_passes_on_at_most_the_limit_in_all() -> None:
    sent: list[str] = []
    send = bounded(sent.append, 5)

    for delta in ["ab", "", "cde", "fg", "h"]:
        send(delta)

    assert sent == ["ab", "cde"]


def test_bounded_cuts_the_delta_that_crosses_the_limit() -> None:
    sent: list[str] = []
    send = bounded(sent.append, 4)

    send("abc")
    send("defg")

    assert "".join(sent) == "abcd"


def test_without_a_limit_the_callback_is_used_as_it_is() -> None:
    assert bounded(print, None) is print


class Item(BaseModel):
    name: str = Field(max_length=3)


class Order(BaseModel):
    items: list[Item]


def validation_error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Order.model_validate(data)
    return caught.value


def test_field_errors_name_the_field_by_its_path() -> None:
    shown, total = field_errors(validation_error({"items": [{"name": "long name"}]}))

    assert total == 1
    assert shown == [("items.0.name", "String should have at most 3 characters", "string_too_long")]


def test_field_errors_show_the_first_few_and_count_them_all() -> None:
    error = validation_error({"items": [{"name": "long name"}] * 20})

    shown, total = field_errors(error)

    assert total == 20
    assert len(shown) == MAX_ERRORS_SHOWN


def test_field_errors_rename_cut_and_quote_names_from_the_input() -> None:
    class Loose(BaseModel):
        values: dict[str, int]

    long_key, odd_key = "k" * (MAX_NAME_CHARS + 10), "bad\nkey"
    with pytest.raises(ValidationError) as caught:
        Loose.model_validate({"values": {long_key: "x", odd_key: "y"}})

    shown, _ = field_errors(caught.value, rename={"values": "facts"})

    assert [field for field, _, _ in shown] == [
        f"facts.{'k' * MAX_NAME_CHARS}…",
        "facts.'bad\\nkey'",
    ]
