"""Merging a request's messages into a stored thread: clients send either the new messages or
the whole conversation again, and a turn that never completed is not kept."""

from __future__ import annotations

from redraft.graphs.nodes import merge_history


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_a_new_thread_is_the_request_messages() -> None:
    assert merge_history([], [user("hi")]) == [user("hi")]


def test_only_the_new_messages_are_appended_to_the_thread() -> None:
    stored = [user("hi"), assistant("Hello!")]

    assert merge_history(stored, [user("How are you?")]) == [*stored, user("How are you?")]


def test_a_resent_conversation_is_not_duplicated() -> None:
    stored = [user("hi"), assistant("Hello!")]
    incoming = [user("hi"), assistant("Hello!"), user("How are you?")]

    assert merge_history(stored, incoming) == incoming


def test_an_unfinished_turn_is_dropped_so_a_retry_is_not_doubled() -> None:
    stored = [user("hi"), assistant("Hello!"), user("What is 2+2?")]  # no reply was made

    assert merge_history(stored, [user("What is 2+2?")]) == [
        user("hi"),
        assistant("Hello!"),
        user("What is 2+2?"),
    ]


def test_a_thread_whose_first_turn_never_completed_starts_again() -> None:
    assert merge_history([user("hi")], [user("hi")]) == [user("hi")]
    assert merge_history([user("hi")], [user("hello?")]) == [user("hello?")]


def test_a_resent_conversation_after_an_unfinished_turn_is_not_duplicated() -> None:
    stored = [user("hi"), assistant("Hello!"), user("lost turn")]
    incoming = [user("hi"), assistant("Hello!"), user("try again")]

    assert merge_history(stored, incoming) == incoming


def test_a_conversation_that_differs_from_the_thread_is_appended_to_it() -> None:
    stored = [user("hi"), assistant("Hello!")]
    incoming = [user("hi (edited)"), assistant("Hello!"), user("next")]

    assert merge_history(stored, incoming) == [*stored, *incoming]


def test_tool_messages_count_as_part_of_a_completed_turn() -> None:
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather"}}],
    }
    result = {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    stored = [user("weather?"), call, result, assistant("It is sunny.")]

    assert merge_history(stored, [user("thanks")]) == [*stored, user("thanks")]


def test_the_inputs_are_not_modified() -> None:
    stored = [user("hi"), assistant("Hello!"), user("lost")]
    incoming = [user("again")]

    merged = merge_history(stored, incoming)
    merged.append(user("more"))

    assert stored == [user("hi"), assistant("Hello!"), user("lost")]
    assert incoming == [user("again")]
