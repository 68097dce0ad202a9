"""The router that learns from the LLM planner: decisions kept opt-in (no text), `redraft route
train` refits, and the router then scores the learnable aspects with the learned weights."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from langgraph.store.memory import InMemoryStore

from redraft import Refiner
from redraft.cli import main
from redraft.config import RefinerConfig
from redraft.personas.store import open_store
from redraft.routing.learning import (
    NAMESPACE,
    Decision,
    LearnedError,
    fit,
    learned_path,
    load_learned,
    record_decision,
    stored_decisions,
    write_learned,
)
from redraft.routing.router import get_router
from tests.conftest import PASS, assistant, plan, user

SAFE_PASS = {**PASS, "domain": "Career", "risk": "medium", "completeness": 4}
UNCLEAR = [
    user("I was laid off yesterday."),
    assistant("I'm sorry. How are you coping?"),
    user("What should I do first?"),
]


@pytest.fixture(autouse=True)
def _model_loaded(local_embeddings) -> None:
    """The model is loaded once per session."""


async def hybrid_turn(provider, http_config, store, **overrides):
    provider.script("planner", plan("coherence"))
    provider.script("coherence", PASS)
    provider.script("safety", SAFE_PASS)
    config = http_config(planner="hybrid", hybrid_threshold=0.3, **overrides)
    async with Refiner(config, store=store) as refiner:
        return await refiner.arefine({"messages": UNCLEAR, "draft": "Update your CV first."})


async def test_the_llm_planners_choice_is_kept_as_features_and_aspects_only(provider, http_config):
    store = InMemoryStore()
    result = await hybrid_turn(provider, http_config, store, learn_routing=True)
    assert result.plan.source == "llm"
    items = await store.asearch(NAMESPACE)
    assert len(items) == 1
    decision = Decision.model_validate(items[0].value)
    assert decision.aspects == ["coherence"]  # the planner's own choice, safety is not learned
    assert {"rule_coherence", "sensitive", "topic"} <= set(decision.features)
    stored = json.dumps(items[0].value)
    for text in ["laid off", "coping", "do first", "Update your CV"]:
        assert text not in stored


async def test_nothing_is_kept_without_the_opt_in(provider, http_config):
    store = InMemoryStore()
    await hybrid_turn(provider, http_config, store)
    assert await store.asearch(NAMESPACE) == []


def decisions(n: int) -> list[Decision]:
    """The planner chooses coherence exactly when the message follows up on the dialogue."""
    rows = []
    for i in range(n):
        follows = i % 2 == 0
        features = {"cue": float(follows), "rule_coherence": 0.4, "topic": 0.1 * (i % 3)}
        rows.append(Decision(features=features, aspects=["coherence"] if follows else []))
    return rows


def test_fit_learns_what_the_planner_chose_and_skips_aspects_it_never_chose():
    learned = fit(decisions(20))
    assert set(learned.aspects) == {"coherence"}
    assert learned.score("coherence", {"cue": 1.0, "rule_coherence": 0.4}) > 0.8
    assert learned.score("coherence", {"cue": 0.0, "rule_coherence": 0.4}) < 0.2
    assert learned.score("factuality", {"cue": 1.0}) is None
    with pytest.raises(ValueError, match="no LLM planner decisions"):
        fit([])


def test_the_router_scores_with_the_learned_weights_once_written(tmp_path):
    config = RefinerConfig(home=tmp_path)
    assert load_learned(config) is None
    learned = fit(decisions(20))
    learned.aspects["coherence"].bias = -50.0  # learned: never coherence
    write_learned(learned, learned_path(config))
    route = get_router(config).route(UNCLEAR, draft="Update your CV first.")
    assert "coherence" not in route.aspects
    assert "learned from the LLM planner" in route.reasons["coherence"]
    learned_path(config).write_text("{not json")
    with pytest.raises(LearnedError, match="redraft route train"):
        load_learned(config)


def test_route_train_refits_from_the_store_and_bounds_what_it_keeps(tmp_path, capsys):
    home = tmp_path / "home"  # REDRAFT_HOME of the isolated environment
    assert main(["route", "train"]) == 2
    assert "no LLM planner decisions" in capsys.readouterr().err

    async def keep() -> None:
        config = RefinerConfig(learn_routing=True)
        async with contextlib.AsyncExitStack() as stack:
            store = await open_store(config, stack)
            for d in decisions(24):
                await record_decision(store, config, d.features, d.aspects)

    asyncio.run(keep())
    assert main(["route", "train"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == 24 and out["learned"] == {
        "coherence": {"chosen": 12, "not_chosen": 12}
    }
    assert (home / "router_learned.json").exists()

    async def bounded() -> int:
        config = RefinerConfig(max_routing_decisions=10)
        async with contextlib.AsyncExitStack() as stack:
            store = await open_store(config, stack)
            kept, dropped = await stored_decisions(store, config)
            return len(kept), dropped, len(await store.asearch(NAMESPACE, limit=100))

    assert asyncio.run(bounded()) == (10, 14, 10)
