"""The turn's deadline (`deadline_s`): what is still running then is cut, the reply is never lost.

Calls that never answer (`Fault("hang")`, an hour by default, far beyond the client's timeout)
show that only the deadline can have ended the turn. How far past its deadline a turn ends is
measured in benchmarks/deadline.py (RELIABILITY.md), not asserted here. The deadlines leave the
steps that must finish a second or more, for busy CI machines.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver

from redraft import RefineError, Refiner, RefinerConfig
from redraft.graphs.deadline import DeadlineExceeded, TurnTimedOut, until
from redraft.refiner import ReplyToken, TurnDone
from redraft.safety.critic import path_library
from redraft.testing import FakeProvider, Fault
from tests.conftest import PASS, plan, revise, user

HANG = Fault("hang")
BOUND_S = 30  # the test's own bound: a turn that ignored its deadline would hang for an hour


@pytest.fixture(autouse=True, scope="module")
def _warm_imports() -> None:
    """The first streamed structured call of a process imports modules for about half a second;
    these tests cut at deadlines of a second or two, so that cost is paid before they start."""

    async def one_turn() -> None:
        with FakeProvider() as provider:
            provider.script("planner", plan("coherence"))
            provider.script("coherence", revise("a", "b"))
            config = RefinerConfig(
                base_url=provider.base_url, api_key="k", planner="llm", checkpointer="memory"
            )
            async with Refiner(config) as refiner:
                await refiner.arefine({"messages": [user("warm up")]})

    asyncio.run(one_turn())


def deadline_config(http_config, deadline_s: float, **overrides):
    settings = {"planner": "llm", "critics": ["factuality", "coherence"], **overrides}
    return http_config(deadline_s=deadline_s, **settings)


async def refine(refiner: Refiner, request: dict):
    return await asyncio.wait_for(refiner.arefine(request), BOUND_S)


def cut_steps(result) -> list[str]:
    return [d.step for d in result.degraded or [] if "deadline" in d.reason]


async def test_a_slow_critic_is_cut_and_the_merge_runs_with_what_arrived(provider, http_config):
    provider.script("responder", "The tower opened in 1899, mate.")
    provider.script("planner", plan("factuality", "coherence"))
    provider.script("factuality", HANG)
    provider.script("coherence", revise("mate", "friend"))
    provider.script("editor", {"changes": [], "reply": "The tower opened in 1899, friend."})
    async with Refiner(deadline_config(http_config, 4.0)) as refiner:
        result = await refine(refiner, {"messages": [user("When did it open?")]})
    assert result.reply == "The tower opened in 1899, friend."
    assert cut_steps(result) == ["factuality"]
    assert [c.aspect for c in result.critiques] == ["coherence"]
    # the critic's HTTP request was abandoned, not left waiting
    hung = provider.calls_for("factuality")[0]
    for _ in range(100):
        if hung.status is not None:
            break
        await asyncio.sleep(0.05)
    assert hung.status == 499


async def test_no_time_left_for_the_merge_returns_the_draft(provider, http_config):
    provider.script("responder", "the draft")
    provider.script("planner", plan("coherence"))
    provider.script("coherence", revise("draft", "reply"))
    provider.script("editor", HANG)
    async with Refiner(deadline_config(http_config, 2.0)) as refiner:
        result = await refine(refiner, {"messages": [user("hi there")]})
    assert result.reply == result.draft == "the draft"
    assert cut_steps(result) == ["merge"]


async def test_no_draft_by_the_deadline_is_a_typed_error(provider, http_config):
    provider.script("responder", HANG)
    async with Refiner(deadline_config(http_config, 1.0)) as refiner:
        with pytest.raises(RefineError) as info:
            await refine(refiner, {"messages": [user("hello?")]})
    assert info.value.step == "draft"
    assert isinstance(info.value.cause, DeadlineExceeded)


async def test_a_handed_in_draft_survives_a_provider_that_never_answers(provider, http_config):
    provider.faults, provider.error_rate = [HANG], 1.0
    async with Refiner(deadline_config(http_config, 1.0)) as refiner:
        result = await refine(
            refiner, {"messages": [user("When did it open?")], "draft": "It opened in 1889."}
        )
    assert result.reply == "It opened in 1889."
    # the planner was cut; the critics it fell back to had no time left
    assert cut_steps(result) == ["plan", "factuality", "coherence"]


async def test_a_turn_without_deadline_waits_for_slow_critics(provider, http_config):
    provider.latency_s = 0.3
    provider.script("planner", plan("coherence"))
    provider.script("coherence", PASS)
    async with Refiner(deadline_config(http_config, 30.0)) as refiner:
        result = await refine(refiner, {"messages": [user("hi")]})
    assert result.degraded is None and result.critiques[0].verdict == "pass"


async def test_a_resumed_turn_gets_a_deadline_of_its_own(provider, http_config):
    """The user answers the safety question after the first turn's deadline has passed: the
    resumed turn (the answer is the user's next message) still has its whole budget."""
    ask = {
        "verdict": "ask",
        "domain": "Career",
        "risk": "high",
        "completeness": 1,
        "ask_attribute": "Emotional State",
        "question": "How are you feeling?",
    }
    provider.script("responder", "A generic plan.", "A plan for someone anxious.")
    provider.script("planner", plan("safety"), plan("safety"))
    provider.script("safety", ask, {**PASS, "completeness": 4})
    provider.script("safety_answer", {"answered": True, "value": "anxious"})
    config = deadline_config(http_config, 2.0, critics=["safety"])
    # The safety critic's path library loads the embedding model on first use: not in a 1 s turn.
    await path_library(config).nearest("warm up", 1)
    async with Refiner(config) as refiner:
        first = await refine(
            refiner, {"messages": [user("I lost my job, what now?")], "thread_id": "t"}
        )
        assert first.question is not None
        await asyncio.sleep(2.2)  # longer than the deadline
        second = await refine(refiner, {"messages": [user("anxious")], "thread_id": "t"})
    assert second.reply == "A plan for someone anxious."
    assert cut_steps(second) == []


async def ignore_cancellation(*_: object) -> dict:
    """A step that swallows cancellation (for 3 s)."""
    for _ in range(30):
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            continue
    return {"parsed": None, "parsing_error": ValueError("too late")}


class StubbornModel(BaseChatModel):
    """A chat model whose calls ignore cancellation (text and structured)."""

    @property
    def _llm_type(self) -> str:
        return "stubborn"

    def _generate(self, *args, **kwargs) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, *args, **kwargs) -> ChatResult:
        await ignore_cancellation()
        return ChatResult(generations=[ChatGeneration(message=AIMessage("late"))])

    def with_structured_output(self, schema, **kwargs):
        return RunnableLambda(ignore_cancellation)


async def test_a_step_that_ignores_cancellation_is_left_behind(provider, http_config):
    provider.script("responder", "the draft")
    config = deadline_config(http_config, 1.5)
    async with Refiner(config, model={"planner": StubbornModel()}) as refiner:
        result = await refine(refiner, {"messages": [user("hi")]})
    assert result.reply == "the draft"
    assert cut_steps(result) == ["plan", "factuality", "coherence"]


class HangingSaver(InMemorySaver):
    """A thread store that stops answering: on writes, or on reads after the first one."""

    def __init__(self, *, writes: bool = False, reads_after: int | None = None) -> None:
        super().__init__()
        self.writes, self.reads_after, self.reads = writes, reads_after, 0

    async def aget_tuple(self, config):
        self.reads += 1
        if self.reads_after is not None and self.reads > self.reads_after:
            await asyncio.sleep(3600)
        return await super().aget_tuple(config)

    async def aput(self, *args, **kwargs):
        if self.writes:
            await asyncio.sleep(3600)
        return await super().aput(*args, **kwargs)


async def test_the_guard_returns_the_reply_when_the_thread_store_hangs(provider, http_config):
    """The nodes ended on time, but saving the thread does not end: the guard returns the
    reply at the deadline plus its margin (the turn is then not kept in the thread)."""
    provider.script("responder", "the draft")
    provider.script("planner", plan("coherence"))
    provider.script("coherence", PASS)
    config = deadline_config(http_config, 1.5)
    async with Refiner(config, checkpointer=HangingSaver(writes=True)) as refiner:
        events = [e async for e in refiner.astream({"messages": [user("hi")], "thread_id": "t"})]
    result = events[-1].result
    assert isinstance(events[-1], TurnDone)
    assert result.reply == "the draft"
    assert [d.step for d in result.degraded] == ["deadline"]
    assert "stopped" in result.degraded[0].reason
    assert ReplyToken(text="the draft") in events


@pytest.mark.parametrize("draft", [None, "a handed-in draft"])
async def test_the_guard_before_any_draft(provider, http_config, draft):
    """Reading the thread hangs at the start of the run: the handed-in draft is the reply, and
    without one there is a typed error."""
    config = deadline_config(http_config, 0.5)
    request = {"messages": [user("hi")], "thread_id": "t", **({"draft": draft} if draft else {})}
    async with Refiner(config, checkpointer=HangingSaver(reads_after=1)) as refiner:
        if draft is None:
            with pytest.raises(RefineError) as info:
                await refine(refiner, request)
            assert info.value.step == "deadline"
            return
        result = await refine(refiner, request)
    assert result.reply == draft and [d.step for d in result.degraded] == ["deadline"]
    assert provider.calls == []


async def test_a_merge_cut_mid_stream_is_taken_back(provider, http_config):
    """The editor's reply streams slowly and is cut: listeners are told to discard it."""
    long_reply = " ".join(["word"] * 200)
    provider.script("planner", plan("coherence"))
    provider.script("coherence", revise("hi", "hello"))
    provider.script("editor", {"changes": [], "reply": long_reply})
    provider.tokens_per_s = 100  # the editor's reply needs ~2 s, the deadline allows ~1
    config = deadline_config(http_config, 1.5)
    async with Refiner(config) as refiner:
        events = [e async for e in refiner.astream({"messages": [user("x")], "draft": "hi"})]
    tokens = [e for e in events if isinstance(e, ReplyToken)]
    assert any(t.text for t in tokens[:-2]), "some of the rewrite was streamed"
    assert tokens[-2:] == [ReplyToken(reset=True), ReplyToken(text="hi")]
    assert events[-1].result.reply == "hi"
    assert cut_steps(events[-1].result) == ["merge"], events[-1].result.degraded


async def test_until_passes_items_then_stops_the_stream():
    cancelled = asyncio.Event()

    async def items():
        yield 1
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield 2

    seen = []
    with pytest.raises(TurnTimedOut):
        async for item in until(items(), 0.2):
            seen.append(item)
    assert seen == [1]
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_until_passes_errors_and_the_end_through():
    async def failing():
        yield "a"
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        async for _ in until(failing(), 5):
            pass

    async def finite():
        for i in range(3):
            yield i

    assert [i async for i in until(finite(), 5)] == [0, 1, 2]
    assert [i async for i in until(finite(), None)] == [0, 1, 2]
