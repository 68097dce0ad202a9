"""`redraft demo`: the offline walk-through runs the real graph and tells the truth about it."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from redraft.cli.demo import (
    ASK_FIRST,
    CHIT_CHAT,
    FACT_FIX,
    PERSONA_FIT,
    SCENES,
    run_demo,
    turn_labels,
    walk_through,
)
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
    # the safety turn: the question, then the user's answer, then the reply it led to
    question = ASK_FIRST.script["safety"][0]["question"]
    resumed_reply = ASK_FIRST.script["responder"][1]
    assert text.index(question) < text.index(ASK_FIRST.answer) < text.index(resumed_reply)
    assert "kept as the user's Emotional State" in text
    assert "Stored in the user's profile" in text and "'overwhelmed, barely sleeping'" in text
    for label in turn_labels():
        assert label.split(" ")[-1] in text


def test_fact_fix_cites_the_passage_and_corrects_the_date(played):
    _, (fact, *_) = played

    assert fact.plan.aspects == ["factuality"]
    (critique,) = fact.critiques
    assert critique.verdict == "revise"
    assert "p1" in critique.evidence
    assert "1887" in fact.draft and "March 1889" in fact.reply
    assert [c.aspect for c in fact.changes] == ["factuality"]


def test_persona_turn_runs_its_critics_concurrently(played):
    model, (_, persona, *_) = played

    assert persona.plan.aspects == ["personalization", "coherence"]
    verdicts = {c.aspect: c.verdict for c in persona.critiques}
    assert verdicts == {"personalization": "revise", "coherence": "pass"}
    assert "steak" in persona.draft and "steak" not in persona.reply
    assert model.max_in_flight(["personalization", "coherence"]) == 2


def test_chit_chat_makes_no_critic_or_editor_call(played):
    model, (_, _, chit_chat, *_) = played

    assert chit_chat.plan.aspects == []
    assert not chit_chat.changed
    assert set(chit_chat.usage.by_agent) == {"responder", "planner"}
    # The chit-chat turn's draft is followed by its plan, then by the next turn's draft.
    agents = [call.agent for call in model.calls]
    start = next(
        n for n, call in enumerate(model.calls) if call.messages[-1]["content"] == CHIT_CHAT.message
    )
    assert agents[start : start + 3] == ["responder", "planner", "responder"]
    assert agents.count("editor") == 2


def test_the_turns_share_one_thread(played):
    model, _ = played

    chit_chat_prompt = str(model.calls_for("responder")[2].messages)
    assert CHIT_CHAT.message in chit_chat_prompt
    assert FACT_FIX.message in chit_chat_prompt
    assert PERSONA_FIT.message in chit_chat_prompt


def test_each_turn_reports_only_its_own_timings(played):
    _, (_, _, chit_chat, asked, resumed) = played

    assert not CRITICS & set(chit_chat.timings)
    # the resumed part of a turn starts where the question paused it
    assert "load_context" not in resumed.timings and "ask_user" in resumed.timings
    assert resumed.timings["draft"] < asked.timings["total"]


def test_the_safety_critic_asks_first_and_the_answer_resumes_the_turn(played):
    model, (*_, asked, resumed) = played

    # the paused turn: its reply is the question; the draft was held back
    assert asked.question is not None
    assert asked.question.attribute == "Emotional State"
    assert asked.reply == ASK_FIRST.script["safety"][0]["question"]
    assert asked.draft == ASK_FIRST.script["responder"][0]
    assert asked.thread_id == resumed.thread_id == ASK_FIRST.thread
    # the safety critic saw the nearest stored question of the real path library
    first_look = str(model.calls_for("safety")[0].messages)
    assert "I failed my final exams and my parents will be furious." in first_look
    # resumed on the same thread: the answer is kept and the question answered with it
    assert [(a.attribute, a.answer, a.declined) for a in resumed.asked] == [
        ("Emotional State", ASK_FIRST.answer, False)
    ]
    redraft_prompt = str(model.calls_for("responder")[-1].messages)
    assert ASK_FIRST.message in redraft_prompt
    assert "Emotional State: overwhelmed, barely sleeping" in redraft_prompt
    assert FACT_FIX.message not in redraft_prompt  # its own thread, not the Paris one
    second_look = str(model.calls_for("safety")[1].messages)
    assert "Emotional State: overwhelmed, barely sleeping" in second_look
    assert resumed.question is None
    assert resumed.reply == ASK_FIRST.script["responder"][1]
    assert [c.verdict for c in resumed.critiques] == ["pass"]


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: s.title)
def test_every_scripted_issue_quotes_the_draft(scene):
    """Critics quote exact spans of the reply; the script must too, or the demo would lie."""
    drafts = scene.script["responder"]
    for aspect in (CRITICS | {"safety"}) & set(scene.script):
        for critique, draft in zip(scene.script[aspect], drafts, strict=False):
            for issue in critique.get("issues", []):
                assert issue["span"] in draft
