"""`redraft demo`: the offline walk-through runs the real graph and tells the truth about it."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from redraft.demo import CHIT_CHAT, FACT_FIX, PERSONA_FIT, SCENES, run_demo, walk_through
from redraft.testing import ScriptedChatModel

CRITICS = {"factuality", "personalization", "coherence"}


def flat(console: Console) -> str:
    """The recorded output as one line of words, free of box borders and wrapping."""
    return " ".join(console.export_text().replace("│", " ").split())


@pytest.fixture(scope="module")
def played() -> tuple[ScriptedChatModel, list]:
    """The walk-through with a slower model, so concurrent critics measurably overlap."""
    model = ScriptedChatModel(latency_s=0.05)
    console = Console(record=True, width=120)
    results = asyncio.run(walk_through(console, model))
    return model, results


def test_demo_runs_offline_and_says_so():
    console = Console(record=True, width=120)

    assert run_demo(console) == 0

    text = flat(console)
    assert text.index("A scripted model stands in for the LLM") < text.index("Turn 1")
    assert "no network or API key is used" in text
    for number, scene in enumerate(SCENES, 1):
        assert f"Turn {number}: {scene.title}" in text
        assert scene.message in text
    assert "No change: the draft is the reply." in text


def test_fact_fix_cites_the_passage_and_corrects_the_date(played):
    _, (fact, _, _) = played

    assert fact.plan.aspects == ["factuality"]
    (critique,) = fact.critiques
    assert critique.verdict == "revise"
    assert "p1" in critique.evidence
    assert "1887" in fact.draft and "March 1889" in fact.reply
    assert [c.aspect for c in fact.changes] == ["factuality"]


def test_persona_turn_runs_its_critics_concurrently(played):
    model, (_, persona, _) = played

    assert persona.plan.aspects == ["personalization", "coherence"]
    verdicts = {c.aspect: c.verdict for c in persona.critiques}
    assert verdicts == {"personalization": "revise", "coherence": "pass"}
    assert "steak" in persona.draft and "steak" not in persona.reply
    assert model.max_in_flight(["personalization", "coherence"]) == 2


def test_chit_chat_makes_no_critic_or_editor_call(played):
    model, (_, _, chit_chat) = played

    assert chit_chat.plan.aspects == []
    assert not chit_chat.changed
    assert set(chit_chat.usage.by_agent) == {"responder", "planner"}
    # The calls of the last turn are the last two recorded.
    assert [call.agent for call in model.calls[-2:]] == ["responder", "planner"]
    assert [call.agent for call in model.calls].count("editor") == 2


def test_the_turns_share_one_thread(played):
    model, _ = played

    last_draft_prompt = str(model.calls_for("responder")[-1].messages)
    assert FACT_FIX.message in last_draft_prompt
    assert PERSONA_FIT.message in last_draft_prompt


def test_each_turn_reports_only_its_own_timings(played):
    _, (_, _, chit_chat) = played

    assert not CRITICS & set(chit_chat.timings)


@pytest.mark.parametrize("scene", [FACT_FIX, PERSONA_FIT, CHIT_CHAT], ids=lambda s: s.title)
def test_every_scripted_issue_quotes_the_draft(scene):
    """Critics quote exact spans of the reply; the script must too, or the demo would lie."""
    (draft,) = scene.script["responder"]
    for aspect in CRITICS & set(scene.script):
        for critique in scene.script[aspect]:
            for issue in critique.get("issues", []):
                assert issue["span"] in draft
