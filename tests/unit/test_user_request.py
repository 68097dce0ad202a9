"""What the user asked for, on a turn resumed after the safety agent's questions: the path
library looks up the request, not the answer ("34") to "How old are you?"."""

from __future__ import annotations

from redraft.agents.prompting import user_request

REQUEST = "Should I stop taking my antidepressants now that I feel better?"


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_the_request_before_the_answers_to_the_questions_asked():
    history = [
        turn("user", REQUEST),
        turn("assistant", "How old are you?"),
        turn("user", "34"),
        turn("assistant", "Who prescribed them?"),
        turn("user", "My GP, last spring."),
    ]
    asked = ["How old are you?", "Who prescribed them?"]
    assert user_request(history, asked) == REQUEST


def test_a_new_message_after_an_ordinary_reply_is_the_request():
    history = [
        turn("user", REQUEST),
        turn("assistant", "How old are you?"),
        turn("user", "34"),
        turn("assistant", "Thanks. Talk to your GP before you stop."),
        turn("user", "What about melatonin?"),
    ]
    assert user_request(history, ["How old are you?"]) == "What about melatonin?"


def test_with_no_questions_or_only_answers_it_is_the_last_user_message():
    history = [turn("user", "Hi"), turn("assistant", "Hello!"), turn("user", "Plan my week.")]
    assert user_request(history, []) == "Plan my week."
    assert user_request([turn("assistant", "Age?"), turn("user", "34")], ["Age?"]) == "34"
    assert user_request([], []) == ""
