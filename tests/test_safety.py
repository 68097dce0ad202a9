"""The safety agent: ask for missing context (interrupt + resume), block in a crisis, caps."""

from __future__ import annotations

import pytest

from redraft import RefineError, Refiner, RefinerConfig
from redraft.safety.critic import read_answer
from redraft.testing import ScriptedChatModel
from tests.conftest import plan, revise, user

QUERY = "I lost my job today and I don't know how I'll pay rent. What should I do?"


def ask(attribute: str, question: str = "", completeness: int = 1) -> dict:
    return {
        "verdict": "ask",
        "issues": [],
        "confidence": 0.8,
        "evidence": [],
        "domain": "Career",
        "risk": "high",
        "completeness": completeness,
        "ask_attribute": attribute,
        "question": question or f"Could you tell me about your {attribute.lower()}?",
    }


SAFE_PASS = {
    "verdict": "pass",
    "issues": [],
    "confidence": 0.9,
    "evidence": [],
    "domain": "Career",
    "risk": "medium",
    "completeness": 4,
}


def refiner(model: ScriptedChatModel, **overrides) -> Refiner:
    config = RefinerConfig(checkpointer="memory", planner="llm", **overrides)
    return Refiner(config, model=model)


async def test_ask_pauses_the_turn_and_the_answer_resumes_it():
    model = ScriptedChatModel()
    model.script("responder", "Here is a generic plan.", "Here is a plan for someone anxious.")
    model.script("planner", plan("safety"), plan("safety"))
    model.script("safety", ask("Emotional State", "How are you feeling right now?"), SAFE_PASS)
    model.script("safety_answer", {"answered": True, "value": "very anxious"})
    async with refiner(model) as r:
        first = await r.arefine({"messages": [user(QUERY)], "thread_id": "t", "user_id": "u"})
        assert first.question is not None
        assert first.question.attribute == "Emotional State"
        assert first.reply == "How are you feeling right now?"
        assert model.calls_for("editor") == []

        second = await r.arefine(
            {"messages": [user("Honestly, very anxious.")], "thread_id": "t", "user_id": "u"}
        )
    assert second.question is None
    assert second.reply == "Here is a plan for someone anxious."
    assert [(a.attribute, a.declined) for a in second.asked] == [("Emotional State", False)]
    # the original question was answered again, with the attribute in the drafting context
    redraft_prompt = str(model.calls_for("responder")[1].messages)
    assert "Emotional State: very anxious" in redraft_prompt
    assert QUERY in redraft_prompt
    # the known attribute reached the safety critic's second look
    assert "Emotional State: very anxious" in str(model.calls_for("safety")[1].messages)


async def test_aresume_answers_the_pending_question():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"), plan("safety"))
    model.script("safety", ask("Age"), SAFE_PASS)
    model.script("safety_answer", {"answered": True, "value": "25-34 years"})
    async with refiner(model) as r:
        await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
        result = await r.aresume("default", "t", "I'm 29")
    assert result.asked[0].answer == "I'm 29"
    assert result.question is None


async def test_resume_without_pending_question_is_a_clear_error():
    model = ScriptedChatModel()
    model.script("planner", {"steps": []})
    async with refiner(model) as r:
        await r.arefine({"messages": [user("hello")], "thread_id": "t"})
        with pytest.raises(RefineError, match="no pending question") as info:
            await r.aresume("default", "t", "an answer to nothing")
    assert info.value.step == "resume"


async def test_known_attribute_is_never_asked_again():
    model = ScriptedChatModel()
    model.script("responder", "draft one", "draft two", "draft three")
    model.script("planner", plan("safety"), plan("safety"), plan("safety"))
    # the model keeps asking for the same attribute
    model.script("safety", ask("Emotional State"), ask("Emotional State"), ask("Emotional State"))
    model.script("safety_answer", {"answered": True, "value": "calm"})
    model.script("editor", {"changes": [], "reply": "careful reply"})
    async with refiner(model) as r:
        first = await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
        second = await r.arefine({"messages": [user("I'm calm")], "thread_id": "t"})
    assert first.question is not None
    assert second.question is None
    safety = [c for c in second.critiques if c.aspect == "safety"][-1]
    assert safety.verdict == "revise"  # turned into a careful answer instead of a repeat
    assert second.reply == "careful reply"


async def test_declined_answer_is_respected_without_a_model_call():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"), plan("safety"))
    model.script("safety", ask("Past Self-Harm History"), ask("Past Self-Harm History"))
    model.script("editor", {"changes": [], "reply": "a careful answer"})
    async with refiner(model) as r:
        await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
        result = await r.arefine({"messages": [user("I'd rather not say.")], "thread_id": "t"})
    assert model.calls_for("safety_answer") == []
    assert result.asked[0].declined is True
    assert result.question is None
    assert "Past Self-Harm History" in str(model.calls_for("safety")[1].messages)


async def test_question_cap_holds():
    model = ScriptedChatModel()
    model.script("planner", *[plan("safety")] * 3)
    model.script("safety", ask("Age"), ask("Emotional State"), ask("Profession"))
    model.script(
        "safety_answer", {"answered": True, "value": "30"}, {"answered": True, "value": "ok"}
    )
    model.script("editor", {"changes": [], "reply": "best care"})
    async with refiner(model, max_questions=2) as r:
        first = await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
        second = await r.arefine({"messages": [user("30")], "thread_id": "t"})
        third = await r.arefine({"messages": [user("ok I guess")], "thread_id": "t"})
    assert first.question.attribute == "Age"
    assert second.question.attribute == "Emotional State"
    assert third.question is None and third.reply == "best care"


async def test_enough_background_means_no_question():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"))
    model.script("safety", ask("Age", completeness=4))
    model.script("editor", {"changes": [], "reply": "answered with care"})
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
    assert result.question is None and result.reply == "answered with care"


async def test_block_wins_over_every_other_critique():
    model = ScriptedChatModel()
    model.script("responder", "Here are some ways to do that.")
    model.script("planner", plan("factuality", "safety", "coherence"))
    model.script("factuality", revise("ways", "methods"))
    model.script("coherence", revise("Here", "There"))
    model.script(
        "safety",
        {
            **SAFE_PASS,
            "verdict": "block",
            "risk": "crisis",
            "safe_reply": "I'm so sorry you're hurting. You matter, and help is available.",
        },
    )
    async with refiner(model, locale="en-GB") as r:
        result = await r.arefine({"messages": [user("I want to end it all tonight.")]})
    assert result.blocked is True
    assert result.reply.startswith("I'm so sorry you're hurting.")
    assert "116 123" in result.reply  # the locale's crisis resources
    assert model.calls_for("editor") == []


async def test_only_the_safety_agent_declares_a_crisis():
    """A `block` from another critic is an ordinary request for changes, not a crisis reply."""
    model = ScriptedChatModel()
    model.script("responder", "Try the steak.")
    model.script("planner", plan("personalization"))
    model.script("personalization", {**revise("steak", "mushroom galette"), "verdict": "block"})
    model.script("editor", {"changes": [], "reply": "Try the mushroom galette."})
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user("What should I eat tonight?")]})
    assert not result.blocked
    assert result.reply == "Try the mushroom galette."


async def test_unparseable_safety_output_is_a_caution_never_a_pass():
    model = ScriptedChatModel()
    model.script("responder", "Just quit tomorrow.")
    model.script("planner", plan("safety"))
    model.script("safety", "not json", "still not json")
    model.script("editor", {"changes": [], "reply": "Take a breath before deciding."})
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user(QUERY)]})
    safety = next(c for c in result.critiques if c.aspect == "safety")
    assert safety.verdict == "revise"
    assert result.reply == "Take a breath before deciding."
    assert [d.step for d in result.degraded] == ["safety"]


async def test_without_a_thread_the_question_is_the_reply():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"))
    model.script("safety", ask("Economic Status", "How are you doing financially?"))
    async with refiner(model) as r:
        result = await r.arefine({"messages": [user(QUERY)]})
    assert result.question.attribute == "Economic Status"
    assert result.reply == "How are you doing financially?"


async def test_examples_come_from_the_path_library():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"))
    async with refiner(model) as r:
        await r.arefine({"messages": [user("My father just died and I can't cope.")]})
    prompt = model.calls_for("safety")[0].messages[1]["content"]
    examples = prompt.split("Example acquisition paths:", 1)[1]
    # the nearest stored query comes first, with its path
    assert examples.splitlines()[1].startswith('- similar question: "My father just died')


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "  ",
        "skip",
        "Skip this one, please.",
        "Pass.",
        "I'll pass on that",
        "I'd rather not say",
        "I\u2019d rather not say.",
        "Prefer not to",
        "I'd prefer not to answer that",
        "None of your business!",
        "That's none of your business",
        "No comment",
        "Sorry, I'd rather not",
        "I don't want to talk about it",
        "Not comfortable sharing that",
        "I decline to answer",
    ],
)
async def test_declining_phrases_are_declined(answer):
    reading = read_answer(
        None, attribute="Age", question="How old are you?", answer=answer, method="json_schema"
    )
    assert await reading is None


@pytest.mark.parametrize(
    "answer",
    [
        "I passed my driving test last year",
        "I skipped breakfast",
        "I skip meals to save money",
        "I pass out sometimes",
        "I'm not comfortable with how little money I have",
        "My health has been in decline",
        "I'd rather not lose my job; I'm 29",
        "No, never",
    ],
)
async def test_answers_that_merely_contain_a_declining_word_are_answers(answer):
    reading = read_answer(
        None, attribute="Age", question="How old are you?", answer=answer, method="json_schema"
    )
    assert await reading == answer
