"""Conflicts between critiques: where two critics flag the same words, the fix of the aspect
with the higher precedence is applied and the other is recorded as overridden."""

from __future__ import annotations

from redraft.agents.editor import order_by_precedence, resolve_conflicts
from redraft.state import Critique, Issue, Override

PRECEDENCE = ("safety", "factuality", "personalization", "coherence")


def critique(aspect: str, *spans: str) -> Critique:
    issues = [Issue(span=span, problem=f"{aspect} problem", fix=f"{aspect} fix") for span in spans]
    return Critique(aspect=aspect, verdict="revise", issues=issues)


def spans(critiques: list[Critique]) -> dict[str, list[str]]:
    return {c.aspect: [i.span for i in c.issues] for c in critiques}


def test_overlapping_issue_of_the_lower_aspect_is_overridden() -> None:
    safety = critique("safety", "take 800 mg of ibuprofen")
    coherence = critique("coherence", "ibuprofen")

    kept, overridden = resolve_conflicts([coherence, safety], PRECEDENCE)

    assert spans(kept) == {"safety": ["take 800 mg of ibuprofen"]}
    assert overridden == [Override(aspect="coherence", span="ibuprofen", by="safety")]


def test_the_winner_is_decided_by_precedence_not_by_input_order() -> None:
    factuality = critique("factuality", "in 1889")
    personalization = critique("personalization", "opened in 1889")

    for order in ([factuality, personalization], [personalization, factuality]):
        kept, overridden = resolve_conflicts(order, PRECEDENCE)
        assert spans(kept) == {"factuality": ["in 1889"]}
        assert [o.by for o in overridden] == ["factuality"]


def test_the_precedence_given_is_the_one_applied() -> None:
    safety = critique("safety", "the dose")
    coherence = critique("coherence", "the dose")

    kept, overridden = resolve_conflicts([safety, coherence], tuple(reversed(PRECEDENCE)))

    assert spans(kept) == {"coherence": ["the dose"]}
    assert overridden == [Override(aspect="safety", span="the dose", by="coherence")]


def test_spans_match_ignoring_case_and_surrounding_space() -> None:
    kept, overridden = resolve_conflicts(
        [critique("factuality", "  The Eiffel Tower "), critique("coherence", "the eiffel tower")],
        PRECEDENCE,
    )

    assert list(spans(kept)) == ["factuality"]
    assert overridden[0].span == "the eiffel tower"


def test_issues_on_different_words_are_all_kept() -> None:
    kept, overridden = resolve_conflicts(
        [critique("safety", "stop your medication"), critique("coherence", "as I said before")],
        PRECEDENCE,
    )

    assert spans(kept) == {
        "safety": ["stop your medication"],
        "coherence": ["as I said before"],
    }
    assert overridden == []


def test_one_aspect_never_overrides_itself() -> None:
    kept, overridden = resolve_conflicts(
        [critique("factuality", "built in 1889", "1889")], PRECEDENCE
    )

    assert spans(kept) == {"factuality": ["built in 1889", "1889"]}
    assert overridden == []


def test_an_empty_span_neither_conflicts_nor_claims_words() -> None:
    safety = critique("safety", "")
    coherence = critique("coherence", "", "anything at all")

    kept, overridden = resolve_conflicts([safety, coherence], PRECEDENCE)

    assert spans(kept) == {"safety": [""], "coherence": ["", "anything at all"]}
    assert overridden == []


def test_a_critique_left_without_issues_is_dropped_and_the_input_is_untouched() -> None:
    safety = critique("safety", "the whole reply")
    coherence = critique("coherence", "whole reply", "reply")

    kept, overridden = resolve_conflicts([safety, coherence], PRECEDENCE)

    assert [c.aspect for c in kept] == ["safety"]
    assert [(o.aspect, o.span, o.by) for o in overridden] == [
        ("coherence", "whole reply", "safety"),
        ("coherence", "reply", "safety"),
    ]
    assert [i.span for i in coherence.issues] == ["whole reply", "reply"]


def test_kept_critiques_come_in_precedence_order() -> None:
    given = [critique(aspect, f"{aspect} words") for aspect in reversed(PRECEDENCE)]

    kept, _ = resolve_conflicts(given, PRECEDENCE)

    assert [c.aspect for c in kept] == list(PRECEDENCE)


def test_an_aspect_outside_the_precedence_comes_last_and_yields() -> None:
    tone = critique("tone", "Dear valued customer")
    coherence = critique("coherence", "valued customer")

    assert [c.aspect for c in order_by_precedence([tone, coherence], PRECEDENCE)] == [
        "coherence",
        "tone",
    ]
    kept, overridden = resolve_conflicts([tone, coherence], PRECEDENCE)
    assert spans(kept) == {"coherence": ["valued customer"]}
    assert overridden == [Override(aspect="tone", span="Dear valued customer", by="coherence")]


def test_order_by_precedence_keeps_the_input_order_among_equals() -> None:
    first, second = critique("tone", "a"), critique("style", "b")

    assert order_by_precedence([first, second], PRECEDENCE) == [first, second]
