"""What a turn spends CPU on: `arefine` has the graph stream only what its result needs, and
the result is the one `astream` ends with."""

from __future__ import annotations

from unittest import mock

from langgraph.types import Interrupt

from redraft import Refiner, RefinerConfig
from redraft.graphs.refine import build_graph
from redraft.refiner import events
from redraft.refiner.events import TurnDone, TurnEvents
from redraft.safety.ask import INTERRUPT_TYPE
from redraft.testing import ScriptedChatModel
from tests.conftest import plan, revise, user
from tests.test_safety import QUERY, ask


def test_a_question_is_read_from_the_state_the_turn_stops_with():
    question = {"type": INTERRUPT_TYPE, "attribute": "Age", "question": "How old are you?"}
    read = TurnEvents()
    made = read.read("values", {"reply": "draft", "__interrupt__": (Interrupt(value=question),)})
    assert made == []
    assert read.question is not None and read.question.question == "How old are you?"
    assert read.final == {"reply": "draft"}


def scripted() -> ScriptedChatModel:
    model = ScriptedChatModel()
    model.script("responder", "Pay rent first.", "Pay rent first.")
    model.script("planner", plan("safety", "coherence"), plan("safety", "coherence"))
    model.script("coherence", revise("Pay rent", "Say why."), revise("Pay rent", "Say why."))
    model.script("safety", ask("Age", "How old are you?"), ask("Age", "How old are you?"))
    return model


async def test_arefine_makes_no_events_and_ends_as_astream_does():
    config = RefinerConfig(checkpointer="memory", planner="llm")
    turn = {"messages": [user(QUERY)], "user_id": "u"}
    async with Refiner(config, model=scripted()) as refiner:
        streamed = [e async for e in refiner.astream({**turn, "thread_id": "a"})]
        with mock.patch.object(events, "_events_from_update", side_effect=AssertionError):
            result = await refiner.arefine({**turn, "thread_id": "b"})
    done = streamed[-1]
    assert isinstance(done, TurnDone)
    assert any(e.type == "critique" for e in streamed)  # astream's events are still made
    assert result.question is not None and result.question.attribute == "Age"
    assert result.reply == done.result.reply == "How old are you?"
    exclude = {"timings", "thread_id"}
    assert result.model_dump(exclude=exclude) == done.result.model_dump(exclude=exclude)
    assert set(result.timings) == set(done.result.timings)


async def test_a_turn_that_ends_with_the_merge_is_finalized_in_its_step():
    model = ScriptedChatModel()
    model.script("responder", "Paris is in Spain.")
    model.script("coherence", revise("in Spain", "in France"))
    model.script("editor", {"changes": [], "reply": "Paris is in France."})
    config = RefinerConfig(planner="all", critics=["coherence"])
    graph = build_graph(config, model=model)
    request = {"messages": [user("Where is Paris?")]}
    nodes, final = [], {}
    async for mode, chunk in graph.astream(
        {"request": request}, context=config, stream_mode=["updates", "custom", "values"]
    ):
        if mode == "updates":
            nodes += list(chunk)
        elif mode == "values":
            final = chunk
    assert nodes == ["load_context", "draft", "plan", "coherence", "merge"]
    assert final["reply"] == "Paris is in France."
    assert final["history"][-1] == {"role": "assistant", "content": "Paris is in France."}
    assert {"draft", "coherence", "merge"} <= set(final["timings"])
