"""The graph end to end over the real path: ChatOpenAI → openai SDK → HTTP → FakeProvider."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from redraft import Refiner, RefineResult
from redraft.testing import Fail
from tests.conftest import CRITIC_AGENTS, PASS, assistant, plan, revise, user

KNOWLEDGE = ["The Eiffel Tower was completed in 1889 and is 330 metres tall."]


def request(**extra) -> dict:
    return {"messages": [user("When was the Eiffel Tower finished?")], **extra}


async def test_critics_run_concurrently(provider, http_config):
    provider.latency_s = 0.2
    provider.script("planner", plan(*CRITIC_AGENTS))
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request(knowledge=KNOWLEDGE))
    assert {c.aspect for c in result.critiques} == set(CRITIC_AGENTS)
    assert provider.max_in_flight(agents=list(CRITIC_AGENTS)) == 3


async def test_no_editor_call_when_every_critic_passes(provider, http_config):
    provider.script("planner", plan(*CRITIC_AGENTS))
    for agent in CRITIC_AGENTS:
        provider.script(agent, PASS)
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request())
    assert provider.calls_for("editor") == []
    assert result.reply == result.draft
    assert result.changed is False
    assert result.usage.llm_calls == 5  # responder, planner, three critics
    assert set(result.usage.by_agent) == {"responder", "planner", *CRITIC_AGENTS}


async def test_factual_fix_is_merged(provider, http_config):
    provider.script("responder", "The Eiffel Tower was finished in 1899.")
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("in 1899", "in 1889", evidence=["p1"]))
    provider.script(
        "editor",
        {
            "changes": [{"aspect": "factuality", "change": "1899 → 1889"}],
            "reply": "The Eiffel Tower was finished in 1889.",
        },
    )
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request(knowledge=KNOWLEDGE))
    assert result.draft == "The Eiffel Tower was finished in 1899."
    assert result.reply == "The Eiffel Tower was finished in 1889."
    assert result.changed
    assert result.plan.aspects == ["factuality"] and result.plan.source == "llm"
    assert result.changes[0].aspect == "factuality"
    # the factuality critic read the passage, delimited, in a user message
    factuality_call = provider.calls_for("factuality")[0]
    system, human = factuality_call.messages[0], factuality_call.messages[1]
    assert KNOWLEDGE[0] not in str(system["content"])
    assert KNOWLEDGE[0] in str(human["content"]) and '<passage id="p1">' in str(human["content"])
    assert set(result.timings) >= {"load_context", "draft", "plan", "factuality", "merge", "total"}


async def test_precedence_when_critiques_conflict(provider, http_config):
    provider.script("responder", "Paris has 5 million people, mate.")
    provider.script("planner", plan("coherence", "personalization", "factuality"))
    provider.script("factuality", revise("5 million people", "2.1 million people"))
    provider.script("personalization", revise("5 million people", "lots of people"))
    provider.script("coherence", revise("mate", "friend"))
    provider.script("editor", {"changes": [], "reply": "Paris has 2.1 million people, friend."})
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request())
    editor_prompt = str(provider.calls_for("editor")[0].messages[1]["content"])
    # the lower-precedence fix for the same span never reaches the editor
    assert "2.1 million people" in editor_prompt
    assert "lots of people" not in editor_prompt
    # the rest arrive in precedence order
    assert editor_prompt.index('aspect="factuality"') < editor_prompt.index('aspect="coherence"')
    # precedence at work is not a failure: its own field and `changes`, never `degraded`
    assert [o.model_dump() for o in result.overridden] == [
        {"aspect": "personalization", "span": "5 million people", "by": "factuality"}
    ]
    assert any(c.aspect == "personalization" and "factuality" in c.change for c in result.changes)
    assert result.degraded is None


@pytest.mark.parametrize(
    ("strategy", "agents"),
    [
        ("none", ["responder"]),
        ("self_refine", ["responder", "self_refine", "editor"]),
        ("sequential", ["responder", "planner", "factuality_refiner", "coherence_refiner"]),
        ("parallel", ["responder", "planner", "factuality", "coherence", "editor"]),
    ],
)
async def test_every_strategy_end_to_end(provider, http_config, strategy, agents):
    provider.script("responder", "The tower opened in 1899.")
    provider.script("planner", plan("factuality", "coherence"))
    fixed = "The tower opened in 1889."
    provider.script("self_refine", revise("1899", "1889"))
    provider.script("factuality_refiner", {**revise("1899", "1889"), "reply": fixed})
    provider.script("coherence_refiner", {**PASS, "reply": fixed})
    provider.script("factuality", revise("1899", "1889"))
    provider.script("coherence", PASS)
    provider.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "year"}], "reply": fixed}
    )
    async with Refiner(http_config(strategy=strategy)) as refiner:
        result = await refiner.arefine(request(knowledge=KNOWLEDGE))
    assert isinstance(result, RefineResult)
    assert result.strategy == strategy
    assert sorted(c.agent for c in provider.calls) == sorted(agents)
    assert result.reply == ("The tower opened in 1899." if strategy == "none" else fixed)
    assert result.usage.llm_calls == len(agents)


async def test_sequential_agents_edit_in_planner_order(provider, http_config):
    provider.script("responder", "draft v0")
    provider.script("planner", plan("coherence", "factuality"))
    provider.script("coherence_refiner", {**revise("v0", "v1"), "reply": "draft v1"})
    provider.script("factuality_refiner", {**revise("v1", "v2"), "reply": "draft v2"})
    async with Refiner(http_config(strategy="sequential")) as refiner:
        result = await refiner.arefine(request())
    order = [c.agent for c in provider.calls if c.agent.endswith("_refiner")]
    assert order == ["coherence_refiner", "factuality_refiner"]
    # the second agent saw the first agent's rewrite
    assert "draft v1" in str(provider.calls_for("factuality_refiner")[0].messages[1]["content"])
    assert result.reply == "draft v2"


async def test_chit_chat_runs_no_critic(provider, http_config):
    provider.script("planner", {"steps": []})
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine({"messages": [user("thanks, that's all!")]})
    assert [c.agent for c in provider.calls] == ["responder", "planner"]
    assert result.plan.aspects == [] and result.critiques == []


async def test_provided_draft_is_refined_without_drafting(provider, http_config):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", PASS)
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1889."))
    assert provider.calls_for("responder") == []
    assert result.draft == result.reply == "It was finished in 1889."


async def test_second_round_rechecks_only_revised_aspects(provider, http_config):
    provider.script("planner", plan("factuality", "coherence"))
    provider.script("factuality", revise("x", "y"), PASS)
    provider.script("coherence", PASS)
    provider.script("editor", {"changes": [], "reply": "refined once"})
    async with Refiner(http_config(max_rounds=2)) as refiner:
        result = await refiner.arefine(request())
    assert len(provider.calls_for("factuality")) == 2
    assert len(provider.calls_for("coherence")) == 1
    assert len(provider.calls_for("editor")) == 1
    assert "refined once" in str(provider.calls_for("factuality")[1].messages[1]["content"])
    assert [c.round for c in result.critiques if c.aspect == "factuality"] == [1, 2]


@pytest.mark.parametrize("method", ["function_calling", "json_mode"])
async def test_structured_output_methods(provider, http_config, method):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1899", "1889"))
    provider.script("editor", {"changes": [], "reply": "fixed"})
    async with Refiner(http_config(structured_output=method)) as refiner:
        result = await refiner.arefine(request())
    assert result.reply == "fixed"
    assert result.critiques[0].verdict == "revise"


# ── failures never lose the reply ────────────────────────────────────────────────────


async def test_failing_critic_degrades_the_turn(provider, http_config):
    provider.script("responder", "draft text")
    provider.script("planner", plan("factuality", "coherence"))
    provider.script("factuality", Fail(status=500, message="boom"))
    provider.script("coherence", revise("draft", "reply"))
    provider.script("editor", {"changes": [], "reply": "reply text"})
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request())
    assert result.reply == "reply text"
    assert [d.step for d in result.degraded] == ["factuality"]


async def test_unparseable_critic_output_is_retried_once_then_skipped(provider, http_config):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", "this is not json", "still not json")
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request())
    assert len(provider.calls_for("factuality")) == 2
    assert result.reply == result.draft
    assert result.degraded[0].step == "factuality"


async def test_unparseable_output_then_valid_recovers(provider, http_config):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", "{broken", PASS)
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request())
    assert result.degraded is None
    assert result.critiques[0].verdict == "pass"


async def test_editor_failure_returns_the_draft(provider, http_config):
    provider.script("responder", "the draft")
    provider.script("planner", plan("coherence"))
    provider.script("coherence", revise("draft", "reply"))
    provider.script("editor", Fail(status=503, message="down"))
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request())
    assert result.reply == "the draft"
    assert [d.step for d in result.degraded] == ["merge"]


async def test_provider_down_with_a_given_draft_still_replies(provider, http_config):
    provider.error_rate = 1.0
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine(request(draft="Handed-in reply."))
    assert result.reply == "Handed-in reply."
    steps = [d.step for d in result.degraded]
    # every critic is skipped; the failed safety check still asks for care, which the editor
    # (down too) cannot apply: the handed-in reply stands
    assert steps[0] == "plan" and steps[-1] == "merge"
    assert set(steps[1:-1]) == {*CRITIC_AGENTS, "safety"}


async def test_no_draft_possible_raises_a_typed_error(provider, http_config):
    from redraft import RefineError

    provider.error_rate = 1.0
    async with Refiner(http_config()) as refiner:
        with pytest.raises(RefineError) as info:
            await refiner.arefine(request())
    assert info.value.step == "draft"


# ── threads ──────────────────────────────────────────────────────────────────────────


async def test_thread_continues_and_critiques_reset_each_turn(provider, http_config):
    provider.script("responder", "First answer.", "Second answer.")
    provider.script("planner", plan("coherence"), plan("coherence"))
    async with Refiner(http_config()) as refiner:
        first = await refiner.arefine({"messages": [user("hello")], "thread_id": "t1"})
        second = await refiner.arefine({"messages": [user("and then?")], "thread_id": "t1"})
    turns = provider.calls_for("responder")[1].messages
    contents = [m["content"] for m in turns]
    assert contents[-3:] == ["hello", "First answer.", "and then?"]
    assert len(first.critiques) == 1 and len(second.critiques) == 1
    assert second.thread_id == "t1"


async def test_resent_full_conversation_is_not_duplicated(provider, http_config):
    provider.script("responder", "First answer.", "Second answer.")
    async with Refiner(http_config(strategy="none")) as refiner:
        await refiner.arefine({"messages": [user("hello")], "thread_id": "t"})
        await refiner.arefine(
            {
                "messages": [user("hello"), assistant("First answer."), user("more")],
                "thread_id": "t",
            }
        )
    contents = [m["content"] for m in provider.calls_for("responder")[1].messages[1:]]
    assert contents == ["hello", "First answer.", "more"]


async def test_threads_of_different_users_are_separate(provider, http_config):
    provider.script("responder", "for alice", "for bob")
    async with Refiner(http_config(strategy="none")) as refiner:
        await refiner.arefine(
            {"messages": [user("alice here")], "thread_id": "same", "user_id": "alice"}
        )
        await refiner.arefine(
            {"messages": [user("bob here")], "thread_id": "same", "user_id": "bob"}
        )
    bob_prompt = str(provider.calls_for("responder")[1].messages)
    assert "alice" not in bob_prompt


def test_thread_survives_a_process_restart_on_sqlite(provider, tmp_path):
    """Two `redraft refine` processes, one turn each, on the same SQLite thread store."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": "test-key",
        "REDRAFT_HOME": str(tmp_path / "state"),
        "REDRAFT_STRATEGY": "none",
        "REDRAFT_CHECKPOINTER": "sqlite",
        "REDRAFT_MAX_RETRIES": "0",
    }
    provider.script("responder", "Remembered answer.", "Next.")
    for message in ("remember me", "still there?"):
        request = {"messages": [user(message)], "thread_id": "t"}
        done = subprocess.run(
            [sys.executable, "-m", "redraft", "refine"],
            input=json.dumps(request),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "state" / "threads.sqlite").exists()
    contents = [m["content"] for m in provider.calls_for("responder")[1].messages[1:]]
    assert contents == ["remember me", "Remembered answer.", "still there?"]


async def test_thread_on_postgres(provider, http_config, database_url):
    import uuid

    thread = f"pg-{uuid.uuid4()}"
    config = http_config(strategy="none", checkpointer="auto", database_url=database_url)
    assert config.checkpointer_kind == "postgres"
    provider.script("responder", "Stored in Postgres.", "Next.")
    async with Refiner(config) as refiner:
        await refiner.arefine({"messages": [user("first")], "thread_id": thread})
    async with Refiner(config) as other_process:
        await other_process.arefine({"messages": [user("second")], "thread_id": thread})
    contents = [m["content"] for m in provider.calls_for("responder")[1].messages[1:]]
    assert contents == ["first", "Stored in Postgres.", "second"]


def test_sync_api(provider, http_config):
    provider.script("planner", {"steps": []})
    with Refiner(http_config(checkpointer="sqlite")) as refiner:
        first = refiner.refine({"messages": [user("hi")], "thread_id": "sync"})
        second = refiner.refine({"messages": [user("again")], "thread_id": "sync"})
    assert first.reply and second.reply
    assert len(provider.calls_for("responder")[1].messages) == 4  # system + 3 turns


async def test_astream_yields_typed_events_in_order(provider, http_config):
    from redraft import CritiqueDone, DraftWritten, PlanMade, TurnDone

    provider.script("planner", plan("factuality", "coherence"))
    async with Refiner(http_config()) as refiner:
        events = [e async for e in refiner.astream(request())]
    kinds = [type(e) for e in events]
    assert kinds[0] is DraftWritten and kinds[1] is PlanMade and kinds[-1] is TurnDone
    assert sum(k is CritiqueDone for k in kinds) == 2


async def test_reply_tokens_spell_the_final_reply(provider, http_config):
    from redraft import ReplyToken, TurnDone

    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("draft", "better"))
    long_reply = "The refined reply, written word by word so that it arrives in several chunks."
    provider.script("editor", {"changes": [], "reply": long_reply})
    async with Refiner(http_config()) as refiner:
        events = [e async for e in refiner.astream(request())]
    tokens = [e for e in events if isinstance(e, ReplyToken)]
    text = ""
    for token in tokens:
        text = "" if token.reset else text + token.text
    assert len(tokens) > 1
    assert text == long_reply == events[-1].result.reply
    assert isinstance(events[-1], TurnDone)


async def test_reply_tokens_when_no_edit_is_needed(provider, http_config):
    from redraft import ReplyToken

    provider.script("responder", "Hello there!")
    provider.script("planner", {"steps": []})
    async with Refiner(http_config()) as refiner:
        events = [e async for e in refiner.astream(request())]
    assert "".join(e.text for e in events if isinstance(e, ReplyToken)) == "Hello there!"
