"""An issue whose fix only restates its span asks for no change (`asks_no_change`): dropped
before the critique is made, so the editor is never asked to apply it."""

from __future__ import annotations

import pytest

from redraft.agents.critic import asks_no_change
from redraft.state import Issue


@pytest.mark.parametrize(
    ("span", "fix"),
    [
        # Qwen2.5-0.5B, the factual turn of the real-model tier
        (
            "The Eiffel Tower was finished in 1925.",
            "The text should be 'The Eiffel Tower was finished in 1925.'",
        ),
        ("The Nile is about 3,000 km long", "The Nile is about 3,000 km long."),
        ("don't go", 'It should say "Don\'t go"'),
        ("sell everything", "Keep 'sell everything' as it is"),
    ],
)
def test_a_fix_that_restates_its_span_asks_for_no_change(span: str, fix: str) -> None:
    assert asks_no_change(Issue(span=span, problem="p", fix=fix))


@pytest.mark.parametrize(
    ("span", "fix"),
    [
        ("1925", "1889"),
        ("1925", "Remove '1925'"),
        ("1925", "Change 1925 to 1889"),
        ("sell everything", "Keep 'sell everything' but add a warning about the risk"),
        ("in 1925", "say it was in 1889, not in 1925"),
        ("", "Add a line about opening hours"),  # about the whole reply
    ],
)
def test_a_fix_that_changes_something_is_kept(span: str, fix: str) -> None:
    assert not asks_no_change(Issue(span=span, problem="p", fix=fix))
