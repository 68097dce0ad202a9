"""The safety agent and persona memory: an answer is kept in the user's profile, and what the
profile knows is known in every conversation of that user."""

from __future__ import annotations

from langgraph.store.base import PutOp
from langgraph.store.memory import InMemoryStore

from redraft import Refiner, RefinerConfig
from redraft.testing import ScriptedChatModel
from tests.conftest import plan, user
from tests.test_safety import QUERY, SAFE_PASS, ask


def refiner(model: ScriptedChatModel, **kwargs) -> Refiner:
    # No background learning: only the safety agent writes to the profile here.
    config = RefinerConfig(checkpointer="memory", planner="llm", memory_learn=False)
    return Refiner(config, model=model, **kwargs)


def safety_prompt(model: ScriptedChatModel, n: int) -> str:
    return str(model.calls_for("safety")[n].messages)


async def test_an_answer_is_kept_in_the_profile_and_known_in_other_threads():
    model = ScriptedChatModel()
    model.script("planner", *[plan("safety")] * 3)
    # In the second conversation the model asks the same question again.
    model.script("safety", ask("Emotional State"), SAFE_PASS, ask("Emotional State"))
    model.script("safety_answer", {"answered": True, "value": "very anxious"})
    model.script("editor", {"changes": [], "reply": "an answer with care"})
    async with refiner(model) as r:
        await r.arefine({"messages": [user(QUERY)], "user_id": "u", "thread_id": "one"})
        await r.aresume("u", "one", "Honestly, very anxious.")
        profile = await (await r.personas()).get_profile("u")
        other = await r.arefine({"messages": [user(QUERY)], "user_id": "u", "thread_id": "two"})
    stored = profile.attributes["Emotional State"]
    assert (stored.value, stored.source) == ("very anxious", "stated")
    assert "Emotional State: very anxious" in safety_prompt(model, 2)
    assert other.question is None and other.reply == "an answer with care"
    assert not other.degraded


async def test_attributes_in_the_profile_reach_the_turn():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"))
    model.script("safety", ask("Age"))
    model.script("editor", {"changes": [], "reply": "careful"})
    async with refiner(model) as r:
        await (await r.personas()).set_attribute("u", "Age", "25-34 years", source="imported")
        result = await r.arefine({"messages": [user(QUERY)], "user_id": "u", "thread_id": "t"})
    assert "Age: 25-34 years" in safety_prompt(model, 0)
    assert "Age: 25-34 years" in str(model.calls_for("responder")[0].messages)
    # known already, so it is not asked
    assert result.question is None
    assert next(c for c in result.critiques if c.aspect == "safety").safety.known == ["Age"]


async def test_requests_without_a_user_id_keep_nothing():
    model = ScriptedChatModel()
    model.script("planner", plan("safety"), plan("safety"))
    model.script("safety", ask("Age"), SAFE_PASS)
    model.script("safety_answer", {"answered": True, "value": "30"})
    async with refiner(model) as r:
        await r.arefine({"messages": [user(QUERY)], "thread_id": "t"})
        await r.aresume("default", "t", "I'm 30")
        profile = await (await r.personas()).get_profile("default")
    assert profile.attributes == {}


class ReadOnlyStore(InMemoryStore):
    """Reads work, writes fail (LangGraph batches a node's store calls into `abatch`)."""

    async def abatch(self, ops):
        if any(isinstance(op, PutOp) for op in ops):
            raise OSError("the disk is full")
        return await super().abatch(ops)


async def test_an_answer_that_cannot_be_stored_is_still_used():
    model = ScriptedChatModel()
    model.script("responder", "draft", "a reply for someone anxious")
    model.script("planner", plan("safety"), plan("safety"))
    model.script("safety", ask("Emotional State"), SAFE_PASS)
    model.script("safety_answer", {"answered": True, "value": "anxious"})
    async with refiner(model, store=ReadOnlyStore()) as r:
        await r.arefine({"messages": [user(QUERY)], "user_id": "u", "thread_id": "t"})
        result = await r.aresume("u", "t", "anxious")
    assert result.reply == "a reply for someone anxious"
    assert "Emotional State: anxious" in str(model.calls_for("responder")[1].messages)
    (problem,) = result.degraded
    assert problem.step == "memory"
    assert "could not be stored: OSError: the disk is full" in problem.reason
