"""Every fault kind at every agent, over the real path (ChatOpenAI → openai SDK → HTTP).

The outcome depends on who is hit: no draft means a typed `RefineError`; a planner, critic or
editor that fails degrades the turn and the reply stands. Faults the client can retry are
invisible to the turn when a retry is allowed.
"""

from __future__ import annotations

import pytest

from redraft import RefineError, Refiner
from redraft.refiner import ReplyToken
from redraft.testing import Fail, Fault
from tests.conftest import PASS, plan, revise, user

FAULTS = {
    "http_500": Fail(500, "injected"),
    "http_429": Fail(429, "slow down", retry_after=0.05),
    "reset": Fault("reset"),
    "hang": Fault("hang"),
    "truncate": Fault("truncate"),
    "empty_choices": Fault("empty_choices"),
    "invalid_json": Fault("invalid_json"),
}
DRAFT = "The tower opened in 1899, mate."
REFINED = "The tower opened in 1889, friend."


def script_turn(provider) -> None:
    """A turn that uses every agent once: draft, plan, two critics, one merge."""
    provider.set_default("responder", DRAFT)
    provider.set_default("planner", plan("factuality", "coherence"))
    provider.set_default("factuality", PASS)
    provider.set_default("coherence", revise("mate", "friend"))
    provider.set_default("editor", {"changes": [], "reply": REFINED})


def config(http_config, retries: int = 0, fault: str | None = None):
    return http_config(
        planner="llm",
        critics=["factuality", "coherence"],
        max_retries=retries,
        # `hang` is cut by the client's timeout; other calls get one that a loaded machine
        # cannot hit
        timeout_s=0.5 if fault == "hang" else 5.0,
        deadline_s=10.0,
        # Faults on a first structured call, not the negotiation of a mode (test_structured.py)
        structured_output="json_schema",
    )


@pytest.mark.parametrize("fault", FAULTS)
async def test_no_draft_is_a_typed_error(provider, http_config, fault):
    script_turn(provider)
    provider.script("responder", FAULTS[fault])
    async with Refiner(config(http_config, fault=fault)) as refiner:
        if fault == "invalid_json":
            # a text answer cut in half is still text: nothing can tell it from a short draft
            result = await refiner.arefine({"messages": [user("When did it open?")]})
            assert DRAFT.startswith(result.draft) and len(result.draft) < len(DRAFT)
            return
        with pytest.raises(RefineError) as info:
            await refiner.arefine({"messages": [user("When did it open?")]})
    assert info.value.step == "draft"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize(
    ("agent", "reply", "degraded"),
    [
        ("planner", REFINED, ["plan"]),  # falls back to checking every aspect
        ("factuality", REFINED, ["factuality"]),
        ("editor", DRAFT, ["merge"]),
    ],
)
async def test_a_failing_agent_degrades_the_turn(
    provider, http_config, fault, agent, reply, degraded
):
    script_turn(provider)
    hit = [FAULTS[fault]] * (2 if fault == "invalid_json" else 1)  # parse errors: asked again
    provider.script(agent, *hit)
    async with Refiner(config(http_config, fault=fault)) as refiner:
        result = await refiner.arefine({"messages": [user("When did it open?")]})
    assert result.reply == reply
    assert [d.step for d in result.degraded] == degraded
    assert [c.fault for c in provider.calls_for(agent)][: len(hit)] == [
        None if fault.startswith("http") else fault
    ] * len(hit)


@pytest.mark.parametrize("fault", ["http_500", "http_429", "reset", "hang", "truncate"])
async def test_transport_faults_are_retried_by_the_client(provider, http_config, fault):
    script_turn(provider)
    agents = ["responder", "planner", "factuality", "editor"]
    for agent in agents:
        provider.script(agent, FAULTS[fault])
    async with Refiner(config(http_config, retries=1, fault=fault)) as refiner:
        result = await refiner.arefine({"messages": [user("When did it open?")]})
    assert result.reply == REFINED and result.degraded is None
    for agent in agents:
        assert len(provider.calls_for(agent)) == 2


async def test_an_output_that_does_not_parse_is_asked_for_again(provider, http_config):
    script_turn(provider)
    provider.script("factuality", FAULTS["invalid_json"])
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": [user("When did it open?")]})
    assert result.degraded is None
    assert len(provider.calls_for("factuality")) == 2


async def test_the_retry_after_of_a_429_is_honoured(provider, http_config):
    script_turn(provider)
    provider.script("planner", Fail(429, "slow down", retry_after=0.4))
    async with Refiner(config(http_config, retries=1)) as refiner:
        result = await refiner.arefine({"messages": [user("When did it open?")]})
    first, second = provider.calls_for("planner")
    assert result.degraded is None
    assert second.started - first.ended >= 0.4


async def test_a_streamed_editor_reply_cut_short_is_taken_back(provider, http_config):
    """Streamed, an editor output cut in half still "parses" as a shorter reply: it must be
    recognised as cut, taken back from the listeners, and the draft stand."""
    script_turn(provider)
    provider.script("editor", FAULTS["invalid_json"])
    async with Refiner(config(http_config)) as refiner:
        events = [e async for e in refiner.astream({"messages": [user("When did it open?")]})]
    tokens = [e for e in events if isinstance(e, ReplyToken)]
    assert tokens[0].text and ReplyToken(reset=True) in tokens  # part was streamed, then reset
    assert tokens[-1] == ReplyToken(text=DRAFT)
    result = events[-1].result
    assert result.reply == DRAFT and [d.step for d in result.degraded] == ["merge"]
    assert len(provider.calls_for("editor")) == 1  # streamed text is not asked for again


DOWN = "postgresql://postgres@127.0.0.1:9/nothing"  # nothing listens on port 9


async def test_a_thread_database_that_is_down_fails_fast_and_keeps_a_given_draft(
    provider, http_config
):
    """Threads on a PostgreSQL that does not answer: a typed error within seconds (not the
    connection pool's 30 s), and a handed-in draft still comes back, marked unsaved."""
    script_turn(provider)
    settings = config(http_config).model_copy(
        update={"checkpointer": "postgres", "database_url": DOWN, "memory": False, "kb": "off"}
    )
    async with Refiner(settings) as refiner:
        with pytest.raises(RefineError) as failed:
            await refiner.arefine({"messages": [user("Hi")], "user_id": "u", "thread_id": "t"})
        assert failed.value.step == "threads"
        result = await refiner.arefine(
            {"messages": [user("Hi")], "user_id": "u", "thread_id": "t", "draft": DRAFT}
        )
    assert result.reply == REFINED
    assert [d.step for d in result.degraded] == ["threads"]
    assert "not stored" in result.degraded[0].reason
    assert result.timings["total"] < 15_000


async def test_reading_the_thread_counts_against_the_deadline(provider, http_config):
    script_turn(provider)
    settings = config(http_config).model_copy(
        update={
            "checkpointer": "postgres",
            "database_url": DOWN,
            "memory": False,
            "kb": "off",
            "deadline_s": 1.0,
        }
    )
    async with Refiner(settings) as refiner:
        result = await refiner.arefine(
            {"messages": [user("Hi")], "user_id": "u", "thread_id": "t", "draft": DRAFT}
        )
    cut = {d.step: d.reason for d in result.degraded}
    assert "TimeoutError: no answer within the turn's deadline" in cut["threads"]
    assert result.reply == DRAFT  # no time was left for refining it
