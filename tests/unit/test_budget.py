"""The prompt budget: a prompt too long for the context window is rebuilt with less context, in
a fixed order (oldest history turns, then passages past the top few, then the least relevant
persona facts); one that still does not fit is refused."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from redraft.llm.budget import (
    CHARS_PER_TOKEN,
    KEEP_PASSAGES,
    NO_TRIM,
    TOKENS_PER_MESSAGE,
    Prompt,
    PromptTooLongError,
    Trim,
    estimate_tokens,
    fit,
)

HISTORY = [
    {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "x" * 90}
    for n in range(8)
]
PASSAGES = [f"passage {n} " + "y" * 90 for n in range(6)]
PERSONA = [f"fact {n} " + "z" * 90 for n in range(4)]


class Recorder:
    """A prompt builder that records each trim it was asked to build."""

    def __init__(self) -> None:
        self.built: list[Trim] = []

    def __call__(self, trim: Trim) -> list[BaseMessage]:
        self.built.append(trim)
        turns = trim.history(HISTORY)
        return [
            SystemMessage("You are a critic."),
            HumanMessage(
                "\n".join(
                    [
                        *(m["content"] for m in turns),
                        *trim.passages(PASSAGES),
                        *trim.persona(PERSONA),
                        "the reply under review",
                    ]
                )
            ),
        ]


def prompt(builder: Recorder) -> Prompt:
    return Prompt(builder, history=len(HISTORY), passages=len(PASSAGES), persona=len(PERSONA))


def size(trim: Trim) -> int:
    return estimate_tokens(Recorder()(trim))


def test_tokens_are_estimated_from_characters_and_messages() -> None:
    messages = [SystemMessage("a" * 30), HumanMessage("b" * 60)]

    assert estimate_tokens(messages) == int(90 / CHARS_PER_TOKEN) + 2 * TOKENS_PER_MESSAGE


def test_a_schema_sent_along_counts_too() -> None:
    class Answer(BaseModel):
        verdict: str

    messages = [HumanMessage("hi")]

    assert estimate_tokens(messages, Answer) > estimate_tokens(messages)
    assert estimate_tokens(messages, {"type": "object"}) > estimate_tokens(messages)


def test_tool_calls_count_toward_the_size() -> None:
    call = {"name": "search", "args": {"query": "q" * 300}, "id": "call_1"}

    assert estimate_tokens([AIMessage("", tool_calls=[call])]) > 100


def test_trims_get_smaller_in_the_documented_order() -> None:
    trims = list(prompt(Recorder()).trims())

    assert trims[0] == NO_TRIM
    assert trims[1 : len(HISTORY)] == [Trim(history_dropped=n) for n in range(1, len(HISTORY))]
    passages = trims[len(HISTORY) : len(HISTORY) + len(PASSAGES) - KEEP_PASSAGES]
    assert [t.passages_kept for t in passages] == list(
        range(len(PASSAGES) - 1, KEEP_PASSAGES - 1, -1)
    )
    assert {t.history_dropped for t in passages} == {len(HISTORY) - 1}
    persona = trims[len(HISTORY) + len(PASSAGES) - KEEP_PASSAGES :]
    assert [t.persona_kept for t in persona] == list(range(len(PERSONA) - 1, -1, -1))
    assert {t.passages_kept for t in persona} == {KEEP_PASSAGES}
    sizes = [size(t) for t in trims]
    assert sizes == sorted(sizes, reverse=True)
    assert len(set(sizes)) == len(sizes)


def test_a_prompt_that_fits_is_built_once_and_sent_whole() -> None:
    builder = Recorder()

    messages = fit(prompt(builder), size(NO_TRIM), agent="critic")

    assert builder.built == [NO_TRIM]
    assert estimate_tokens(messages) == size(NO_TRIM)


@pytest.mark.parametrize("position", [1, 5, 9, 13])
def test_the_largest_version_within_the_budget_is_sent(position: int) -> None:
    trims = list(prompt(Recorder()).trims())
    budget = size(trims[position])  # exactly what this version takes: the ones before exceed it
    builder = Recorder()

    messages = fit(prompt(builder), budget, agent="critic")

    assert builder.built[-1] == trims[position]
    assert estimate_tokens(messages) == budget
    assert len(builder.built) < len(trims) // 2 + 4  # bisection, not one build per version


def test_the_last_turn_the_reply_and_the_top_passages_are_never_cut() -> None:
    smallest = list(prompt(Recorder()).trims())[-1]
    builder = Recorder()

    text = fit(prompt(builder), size(smallest), agent="critic")[1].text

    assert HISTORY[-1]["content"] in text
    assert HISTORY[-2]["content"] not in text
    assert all(p in text for p in PASSAGES[:KEEP_PASSAGES])
    assert PASSAGES[KEEP_PASSAGES] not in text
    assert not any(f in text for f in PERSONA)
    assert "the reply under review" in text


def test_a_prompt_too_long_even_trimmed_is_refused_naming_the_agent() -> None:
    smallest = list(prompt(Recorder()).trims())[-1]

    with pytest.raises(PromptTooLongError, match=r"^coherence: prompt does not fit") as error:
        fit(prompt(Recorder()), size(smallest) - 1, agent="coherence")
    assert isinstance(error.value, ValueError)


def test_a_fixed_list_of_messages_is_sent_or_refused_as_it_is() -> None:
    messages = [SystemMessage("s" * 300), HumanMessage("hello")]
    budget = estimate_tokens(messages)

    assert fit(messages, budget, agent="responder") == messages
    with pytest.raises(PromptTooLongError, match="responder"):
        fit(messages, budget - 1, agent="responder")


def history(*roles: str) -> Sequence[dict[str, str]]:
    return [{"role": role, "content": f"{role} {n}"} for n, role in enumerate(roles)]


def test_dropping_history_never_drops_the_last_turn() -> None:
    turns = history("user", "assistant", "user")

    assert Trim(history_dropped=10).history(turns) == [turns[-1]]


def test_no_tool_result_is_left_without_the_call_it_answers() -> None:
    turns = history("user", "assistant", "tool", "tool", "assistant", "user")

    assert Trim(history_dropped=2).history(turns) == list(turns[4:])


def test_numbered_history_keeps_dropped_turns_as_empty_markers() -> None:
    turns = history("user", "assistant", "user")

    numbered = Trim(history_dropped=2).numbered_history(turns)

    assert numbered[:2] == [
        {"role": "user", "content": "", "omitted": True},
        {"role": "assistant", "content": "", "omitted": True},
    ]
    assert numbered[2] == turns[2]


def test_passages_and_persona_keep_the_first_ones() -> None:
    trim = Trim(passages_kept=2, persona_kept=1)

    assert trim.passages(PASSAGES) == PASSAGES[:2]
    assert trim.persona(PERSONA) == PERSONA[:1]
    assert NO_TRIM.passages(PASSAGES) == PASSAGES
    assert NO_TRIM.persona(PERSONA) == PERSONA
