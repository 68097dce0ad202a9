"""The safety agent without a thread: the client resends the whole conversation each turn (the
usual OpenAI-client pattern). For a named user with persona memory, the questions the agent asked
are recorded in the persona store, so the question cap, declined answers and answered attributes
hold across turns as they do in a thread."""

from __future__ import annotations

from redraft import Refiner, RefinerConfig
from redraft.testing import ScriptedChatModel
from tests.conftest import assistant, plan, user
from tests.test_safety import QUERY, ask

AGE_QUESTION = "May I ask roughly how old you are?"
CAREFUL = {"changes": [], "reply": "an answer with care"}


def refiner(model: ScriptedChatModel, **overrides) -> Refiner:
    # No background learning: only the safety agent writes to the store here.
    config = RefinerConfig(checkpointer="memory", planner="llm", memory_learn=False, **overrides)
    return Refiner(config, model=model)


def safety_prompt(model: ScriptedChatModel, n: int) -> str:
    return str(model.calls_for("safety")[n].messages)


async def test_the_answer_in_the_resent_conversation_counts_and_is_kept():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"), plan("safety"))
    # In the second turn the model asks again: the cap (one question) is used up.
    model.script("safety", ask("Age", AGE_QUESTION), ask("Emotional State"))
    model.script("safety_answer", {"answered": True, "value": "25-34 years"})
    model.script("editor", CAREFUL)
    async with refiner(model, max_questions=1) as r:
        first = await r.arefine({"messages": [user(QUERY)], "user_id": "u"})
        # the client keeps the question as it showed it (spacing aside)
        conversation = [user(QUERY), assistant(f" {AGE_QUESTION}\n"), user("I'm 29.")]
        second = await r.arefine({"messages": conversation, "user_id": "u"})
        profile = await (await r.personas()).get_profile("u")
    assert first.reply == AGE_QUESTION
    prompt = safety_prompt(model, 1)
    assert "Questions left in this conversation: 0" in prompt
    assert "Age: 25-34 years" in prompt
    assert "Age: 25-34 years" in str(model.calls_for("responder")[1].messages)
    assert second.question is None and second.reply == "an answer with care"
    assert [(a.attribute, a.answer, a.declined) for a in second.asked] == [
        ("Age", "I'm 29.", False)
    ]
    stored = profile.attributes["Age"]
    assert (stored.value, stored.source) == ("25-34 years", "stated")
    assert not second.degraded


async def test_a_declined_answer_is_not_asked_again():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"), plan("safety"))
    model.script("safety", ask("Past Self-Harm History"), ask("Past Self-Harm History"))
    model.script("editor", CAREFUL)
    async with refiner(model, max_questions=3) as r:
        first = await r.arefine({"messages": [user(QUERY)], "user_id": "u"})
        conversation = [user(QUERY), assistant(first.reply), user("I'd rather not say.")]
        second = await r.arefine({"messages": conversation, "user_id": "u"})
    # an obvious refusal needs no reading by the model
    assert model.calls_for("safety_answer") == []
    prompt = safety_prompt(model, 1)
    assert "declined to share: Past Self-Harm History" in prompt
    assert "Questions left in this conversation: 2" in prompt
    assert second.question is None and second.reply == "an answer with care"
    assert second.asked[0].declined is True


async def test_the_cap_holds_across_turns_and_an_answer_is_read_once():
    model = ScriptedChatModel()
    model.script("planner", *[plan("safety")] * 3)
    # The model asks on every turn; only the first question may go to the user.
    model.script("safety", ask("Age", AGE_QUESTION), ask("Profession"), ask("Emotional State"))
    model.script("safety_answer", {"answered": True, "value": "25-34 years"})
    model.script("editor", CAREFUL, {"changes": [], "reply": "more care"})
    async with refiner(model, max_questions=1) as r:
        turns = [user(QUERY)]
        replies = []
        for message in ("I'm 29.", "And what about my savings?"):
            result = await r.arefine({"messages": turns, "user_id": "u"})
            replies.append(result)
            turns = [*turns, assistant(result.reply), user(message)]
        replies.append(await r.arefine({"messages": turns, "user_id": "u"}))
    assert [t.question is not None for t in replies] == [True, False, False]
    assert [t.reply for t in replies[1:]] == ["an answer with care", "more care"]
    for n in (1, 2):
        assert "Questions left in this conversation: 0" in safety_prompt(model, n)
        assert "Age: 25-34 years" in safety_prompt(model, n)
    # the answer resent in the third turn was read in the second, and not read again
    assert len(model.calls_for("safety_answer")) == 1
    assert replies[2].asked == []  # answered in an earlier turn


async def test_anonymous_users_are_asked_again_and_named_users_are_not():
    model = ScriptedChatModel()
    model.set_default("planner", plan("safety"))
    model.set_default("safety", ask("Age", AGE_QUESTION))
    model.set_default("editor", CAREFUL)
    conversation = [user(QUERY), assistant(AGE_QUESTION), user("I'd rather not say.")]
    async with refiner(model, max_questions=1) as r:
        named = {"user_id": "u"}
        await r.arefine({"messages": [user(QUERY)], **named})
        named_again = await r.arefine({"messages": conversation, **named})
        # No user_id: nothing is stored, so the question cap holds only within a thread.
        await r.arefine({"messages": [user(QUERY)]})
        anonymous_again = await r.arefine({"messages": conversation})
        personas = await r.personas()
        stored = await personas.store.asearch(personas.namespace("default", "questions"))
    assert named_again.question is None
    assert anonymous_again.question is not None and anonymous_again.reply == AGE_QUESTION
    assert "Questions left in this conversation: 1" in safety_prompt(model, 3)
    assert stored == []


async def test_forget_removes_the_recorded_questions():
    model = ScriptedChatModel()
    model.set_default("planner", plan("safety"))
    model.set_default("safety", ask("Age", AGE_QUESTION))
    model.set_default("editor", CAREFUL)
    async with refiner(model, max_questions=1) as r:
        await r.arefine({"messages": [user(QUERY)], "user_id": "u"})
        counts = await r.forget("u")
        personas = await r.personas()
        left = await personas.store.asearch(personas.namespace("u", "questions"))
        conversation = [user(QUERY), assistant(AGE_QUESTION), user("I'd rather not say.")]
        again = await r.arefine({"messages": conversation, "user_id": "u"})
    assert counts["questions"] == 1
    assert left == []
    # forgotten: the old question is no longer recognised in the conversation
    assert again.question is not None
