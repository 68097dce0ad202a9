"""The router and hybrid planners in the graph, over the real path (ChatOpenAI → HTTP →
FakeProvider) with the real embedding model."""

from __future__ import annotations

import time

import pytest

from redraft import Refiner
from redraft.routing.router import Router, get_router
from tests.conftest import PASS, assistant, plan, revise, user

KNOWLEDGE = ["The Eiffel Tower was completed in 1889 and is 330 metres tall."]
SAFE_PASS = {**PASS, "domain": "Career", "risk": "medium", "completeness": 4}
LAID_OFF = [user("I was laid off yesterday."), assistant("I'm sorry. How are you coping?")]


@pytest.fixture(autouse=True)
def _model_loaded(local_embeddings) -> None:
    """The model is loaded once per session (the first route would load it otherwise)."""


def agents(provider) -> list[str]:
    return [call.agent for call in provider.calls]


async def test_router_runs_no_critic_and_no_planner_call_for_small_talk(provider, http_config):
    provider.script("responder", "Great, thanks! And you?")
    async with Refiner(http_config(planner="router")) as refiner:
        result = await refiner.arefine({"messages": [user("hey, how's it going?")]})
    assert agents(provider) == ["responder"]
    assert result.plan.source == "router" and result.plan.aspects == []
    assert set(result.plan.scores) == {"factuality", "personalization", "coherence", "safety"}
    assert result.plan.sensitive is False and result.plan.domain is None
    assert result.usage.llm_calls == 1


async def test_router_sends_the_factual_turn_to_the_factuality_critic(provider, http_config):
    provider.script("factuality", revise("in 1899", "in 1889", evidence=["p1"]))
    provider.script("editor", {"changes": [], "reply": "It was finished in 1889."})
    async with Refiner(http_config(planner="router")) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user("When was the Eiffel Tower finished?")],
                "knowledge": KNOWLEDGE,
                "draft": "It was finished in 1899.",
            }
        )
    assert agents(provider) == ["factuality", "editor"]
    assert result.plan.aspects == ["factuality"]
    assert "knowledge passage" in result.plan.reasons["factuality"]
    assert result.reply == "It was finished in 1889."


async def test_a_sensitive_turn_always_gets_the_safety_critic(provider, http_config):
    provider.script("safety", SAFE_PASS)
    async with Refiner(http_config(planner="router")) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user("I was fired today after ten years at the company.")],
                "draft": "That must be hard. Take a day for yourself.",
            }
        )
    assert "safety" in agents(provider) and "planner" not in agents(provider)
    assert result.plan.sensitive and result.plan.domain == "Career"
    assert result.plan.aspects[0] == "safety"
    # the safety critic was told the router's domain
    assert "Career" in str(provider.calls_for("safety")[0].messages)


async def test_only_configured_critics_are_scheduled_but_the_plan_keeps_safety(
    provider, http_config
):
    config = http_config(planner="router", critics=["factuality", "coherence"])
    async with Refiner(config) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user("I was fired today after ten years at the company.")],
                "draft": "That must be hard. Take a day for yourself.",
            }
        )
    assert provider.calls == []
    assert result.plan.aspects == []
    assert result.plan.sensitive and result.plan.scores["safety"] >= 0.5


async def test_hybrid_lets_the_router_decide_clear_turns(provider, http_config):
    provider.script("responder", "Great, thanks! And you?")
    async with Refiner(http_config(planner="hybrid")) as refiner:
        result = await refiner.arefine({"messages": [user("hey, how's it going?")]})
    assert agents(provider) == ["responder"]
    assert result.plan.source == "router"


async def test_hybrid_hands_unclear_turns_to_the_llm_planner_and_keeps_safety(
    provider, http_config
):
    provider.script("planner", plan("coherence"))
    provider.script("coherence", PASS)
    provider.script("safety", SAFE_PASS)
    async with Refiner(http_config(planner="hybrid", hybrid_threshold=0.3)) as refiner:
        result = await refiner.arefine(
            {"messages": [*LAID_OFF, user("What should I do first?")], "draft": "Update your CV."}
        )
    assert agents(provider)[0] == "planner"
    assert result.plan.source == "llm"
    assert result.plan.aspects == ["safety", "coherence"]
    assert "kept by the router" in result.plan.reasons["safety"]
    assert result.plan.domain == "Career"


async def test_hybrid_threshold_zero_never_calls_the_llm_planner(provider, http_config):
    provider.script("safety", SAFE_PASS)
    provider.set_default("personalization", PASS)
    async with Refiner(http_config(planner="hybrid", hybrid_threshold=0.0)) as refiner:
        result = await refiner.arefine(
            {"messages": [*LAID_OFF, user("What should I do first?")], "draft": "Update your CV."}
        )
    assert provider.calls_for("planner") == []
    assert result.plan.source == "router"


async def test_hybrid_keeps_the_router_decision_when_the_llm_planner_fails(provider, http_config):
    provider.fail_next(2, status=500, agent="planner")
    provider.script("safety", SAFE_PASS)
    provider.set_default("personalization", PASS)
    async with Refiner(http_config(planner="hybrid")) as refiner:
        result = await refiner.arefine(
            {"messages": [*LAID_OFF, user("What should I do first?")], "draft": "Update your CV."}
        )
    assert result.plan.source == "router" and "safety" in result.plan.aspects
    assert [d.step for d in result.degraded or []] == ["plan"]


async def test_a_router_that_cannot_load_degrades_to_every_critic(provider, http_config, tmp_path):
    for agent in ("factuality", "personalization", "coherence", "safety"):
        provider.set_default(agent, PASS if agent != "safety" else SAFE_PASS)
    config = http_config(planner="router", extra_examples_file=tmp_path / "missing.jsonl")
    async with Refiner(config) as refiner:
        result = await refiner.arefine(
            {"messages": [user("When was the Eiffel Tower finished?")], "draft": "In 1889."}
        )
    assert result.plan.source == "all"
    assert result.degraded and result.degraded[0].step == "plan"
    assert "missing.jsonl" in result.degraded[0].reason


async def test_the_routers_embeddings_overlap_the_draft(provider, http_config, monkeypatch):
    """What the router embeds is known before the draft, so it is embedded while the draft is
    written (time.monotonic, the clock of the provider's log) and the plan finds it cached."""

    spans: list[tuple[float, float]] = []
    prefetch = Router.prefetch

    def timed_prefetch(self, *args, **kwargs):
        started = time.monotonic()
        prefetch(self, *args, **kwargs)
        spans.append((started, time.monotonic()))

    monkeypatch.setattr(Router, "prefetch", timed_prefetch)
    config = http_config(planner="router")
    get_router(config).load()  # once per process; the first turn would load it otherwise
    provider.latency_s = 0.3
    provider.script("responder", "Great, thanks! And you?")
    async with Refiner(config) as refiner:
        await refiner.arefine({"messages": [user("hey, how are things with you?")]})
    [draft] = provider.calls_for("responder")
    [(_, ended)] = spans
    assert ended < draft.ended  # done before the draft came back: off the critical path


async def test_no_prefetch_when_the_draft_is_given(provider, http_config, monkeypatch):
    calls: list[object] = []
    monkeypatch.setattr(Router, "prefetch", lambda self, *a, **k: calls.append(a))
    async with Refiner(http_config(planner="router")) as refiner:
        await refiner.arefine({"messages": [user("hey there")], "draft": "Hi!"})
    assert calls == []
