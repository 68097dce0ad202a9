"""The safety agent under `strategy="sequential"` (MARA's order): the same semantics as in
`parallel` — block gives the crisis message, ask interrupts, a failure is a caution."""

from __future__ import annotations

from redraft import Refiner, RefinerConfig
from redraft.testing import ScriptedChatModel
from tests.conftest import PASS, plan, revise, user
from tests.test_safety import QUERY, SAFE_PASS, ask

CRISIS = "I want to end it all tonight."
SAFE_REPLY = "I'm so sorry you're hurting. You matter, and help is available."


def refiner(model: ScriptedChatModel, **overrides) -> Refiner:
    config = RefinerConfig(checkpointer="memory", planner="llm", strategy="sequential", **overrides)
    return Refiner(config, model=model)


def step(critique: dict, reply: str) -> dict:
    """A sequential agent's answer: its critique and the reply after its rewrite."""
    return {**critique, "reply": reply}


def refiners(model: ScriptedChatModel) -> list[str]:
    return [c.agent for c in model.calls if c.agent.endswith("_refiner")]


async def test_block_is_the_crisis_reply_and_no_later_agent_rewrites_it():
    model = ScriptedChatModel()
    model.script("responder", "Here are some ways to do that.")
    # the planner puts safety last; it still goes first and its block ends the round
    model.script("planner", plan("factuality", "coherence", "safety"))
    blocked = {**SAFE_PASS, "verdict": "block", "risk": "crisis", "safe_reply": SAFE_REPLY}
    model.script("safety_refiner", step(blocked, "Here are some ways to do that."))
    model.script("factuality_refiner", step(revise("ways", "methods"), "Here are some methods."))
    model.script("coherence_refiner", step(PASS, "Here are some methods."))
    async with refiner(model, locale="en-GB") as r:
        result = await r.arefine({"messages": [user(CRISIS)]})
    assert result.blocked is True
    assert result.reply.startswith(SAFE_REPLY)
    assert "116 123" in result.reply  # the locale's crisis resources
    assert refiners(model) == ["safety_refiner"]
    assert model.calls_for("editor") == []
    assert [(c.aspect, c.verdict) for c in result.critiques] == [("safety", "block")]


async def test_ask_interrupts_and_the_answer_resumes_the_turn():
    model = ScriptedChatModel()
    model.script("responder", "A generic plan.", "A plan for someone anxious.")
    model.script("planner", plan("coherence", "safety"), plan("coherence", "safety"))
    model.script(
        "safety_refiner",
        step(ask("Emotional State", "How are you feeling right now?"), "A generic plan."),
        step(SAFE_PASS, "A plan for someone anxious."),
    )
    model.script("coherence_refiner", step(PASS, "A plan for someone anxious."))
    model.script("safety_answer", {"answered": True, "value": "very anxious"})
    thread = {"thread_id": "t", "user_id": "u"}
    async with refiner(model) as r:
        first = await r.arefine({"messages": [user(QUERY)], **thread})
        assert first.question is not None
        assert first.question.attribute == "Emotional State"
        assert first.reply == "How are you feeling right now?"
        # the question comes before any other agent's rewrite
        assert refiners(model) == ["safety_refiner"]
        second = await r.arefine({"messages": [user("Honestly, very anxious.")], **thread})
    assert second.question is None
    assert second.reply == "A plan for someone anxious."
    assert [(a.attribute, a.declined) for a in second.asked] == [("Emotional State", False)]
    assert refiners(model) == ["safety_refiner", "safety_refiner", "coherence_refiner"]
    # the answer reached the safety agent's second look
    assert "Emotional State: very anxious" in str(model.calls_for("safety_refiner")[1].messages)


async def test_without_a_thread_the_question_is_the_reply():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"))
    model.script(
        "safety_refiner", step(ask("Economic Status", "How are you doing financially?"), "x")
    )
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user(QUERY)]})
    assert result.question.attribute == "Economic Status"
    assert result.reply == "How are you doing financially?"


async def test_unparseable_safety_step_is_a_caution_never_a_pass():
    model = ScriptedChatModel()
    model.script("responder", "Just quit tomorrow.")
    model.script("planner", plan("coherence", "safety"))
    model.script("safety_refiner", "not json", "still not json")
    model.script("editor", {"changes": [], "reply": "Take a breath before deciding."})
    model.script("coherence_refiner", step(PASS, "Take a breath before deciding."))
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user(QUERY)]})
    safety = next(c for c in result.critiques if c.aspect == "safety")
    assert safety.verdict == "revise" and safety.issues
    assert result.reply == "Take a breath before deciding."
    assert [d.step for d in result.degraded] == ["safety"]
    # the later agent saw the cautious reply
    assert "Take a breath" in str(model.calls_for("coherence_refiner")[0].messages)


async def test_safety_task_has_the_same_context_as_in_parallel():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"), plan("safety"))
    model.script(
        "safety_refiner",
        step(ask("Past Self-Harm History"), "draft"),
        # asks for the declined attribute again: answered with care instead
        step(ask("Past Self-Harm History"), "draft"),
    )
    model.script("editor", {"changes": [], "reply": "a careful answer"})
    async with refiner(model) as r:
        await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
        result = await r.arefine({"messages": [user("I'd rather not say.")], "thread_id": "t"})
    first, second = (c.messages[1]["content"] for c in model.calls_for("safety_refiner"))
    assert "Questions left in this conversation: 3" in first
    assert "Example acquisition paths:\n- similar question" in first  # RAISE's examples
    assert "declined to share: Past Self-Harm History" in second
    assert "Questions left in this conversation: 2" in second
    assert result.asked[0].declined is True
    assert result.question is None and result.reply == "a careful answer"


async def test_safety_revision_comes_first_and_later_agents_build_on_it():
    model = ScriptedChatModel()
    model.script("responder", "Quit now.")
    model.script("planner", plan("coherence", "safety"))
    model.script(
        "safety_refiner",
        step({**SAFE_PASS, **revise("Quit now.", "take time")}, "Take some time first."),
    )
    model.script("coherence_refiner", step(PASS, "Take some time first."))
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user(QUERY)]})
    assert refiners(model) == ["safety_refiner", "coherence_refiner"]
    assert "Take some time first." in str(model.calls_for("coherence_refiner")[0].messages)
    assert result.reply == "Take some time first."
    assert [c.aspect for c in result.changes] == ["safety"]
    assert model.calls_for("editor") == []
