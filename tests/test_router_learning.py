"""The router that learns from the LLM planner: decisions kept opt-in (no text), `redraft route
train` refits, and the router then scores the learnable aspects with the learned weights."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from types import SimpleNamespace

import httpx
import pytest
from langgraph.store.memory import InMemoryStore
from structlog.testing import capture_logs

from redraft import Refiner
from redraft.cli import main
from redraft.config import RefinerConfig
from redraft.personas.store import open_store
from redraft.routing import retrain
from redraft.routing.learning import (
    NAMESPACE,
    Decision,
    LearnedError,
    fit,
    learned_path,
    load_learned,
    record_decision,
    stored_decisions,
    summary,
    write_learned,
)
from redraft.routing.retrain import RouterRetrainer
from redraft.routing.router import get_router
from redraft.server.app import create_app
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


def test_a_noisy_planner_is_predicted_not_asked_again():
    """The planner chooses personalization on two turns in three whatever the turn: the learned
    probability sits near the middle, but every resampled fit makes the same decision, so the
    router is sure of it and hybrid does not hand the turn over."""
    rows = [
        Decision(
            features={"cue": float(i % 2), "topic": 0.1 * (i % 5)},
            aspects=["personalization"] if i % 3 else [],
        )
        for i in range(60)
    ]
    learned = fit(rows)
    probability, settled = learned.score_and_stability(
        "personalization", {"cue": 1.0, "topic": 0.2}
    )
    assert 0.5 < probability < 0.8  # the distance from 0.5 would say: unsure, ask
    assert settled is not None and settled > max(0.5, abs(probability - 0.5) * 2)


def test_where_the_planners_decisions_conflict_the_learned_aspect_is_unsettled():
    rows = [
        Decision(features={"cue": 1.0}, aspects=["coherence"] if i % 2 else []) for i in range(8)
    ]
    _, settled = fit(rows).score_and_stability("coherence", {"cue": 1.0})
    assert settled is not None and settled < 0.5


def test_an_aspect_the_planner_always_chose_is_learned_as_always_chosen():
    rows = [Decision(features={"cue": float(i % 2)}, aspects=["factuality"]) for i in range(12)]
    learned = fit(rows)
    assert set(learned.aspects) == {"factuality"}  # never chosen: left to the rules
    assert learned.score("factuality", {"cue": 0.0}) > 0.9
    assert summary(learned)["learned"]["factuality"]["always"] is True


def test_the_route_is_as_confident_as_its_learned_decisions_are_settled(tmp_path):
    config = RefinerConfig(home=tmp_path)
    learned = fit(decisions(20))
    write_learned(learned, learned_path(config))
    route = get_router(config).route(UNCLEAR, draft="Update your CV first.")
    assert set(route.learned_confidence) == {"coherence"}
    assert "settled" in route.reasons["coherence"]
    unsure = route.model_copy(update={"learned_confidence": {"coherence": 0.0}})
    assert unsure.confidence == 0.0
    old_file = learned.model_copy(deep=True)
    old_file.aspects["coherence"].resampled = []  # a file written before resampled fits
    write_learned(old_file, learned_path(config))
    assert get_router(config).route(UNCLEAR).learned_confidence == {}


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


async def keep(store, decisions_: list[Decision]) -> None:
    config = RefinerConfig(learn_routing=True)
    for d in decisions_:
        await record_decision(store, config, d.features, d.aspects)


def personas_on(store):
    """What the server passes: the refiner's `personas`, whose `store` holds the decisions."""

    async def personas():
        return SimpleNamespace(store=store)

    return personas


async def test_a_retrain_swaps_in_the_new_weights_without_reloading_and_skips_when_nothing_is_new(
    tmp_path,
):
    config = RefinerConfig(home=tmp_path, routing_retrain_every_s=60)
    before = get_router(config)
    await asyncio.to_thread(before.load)
    store = InMemoryStore()
    await keep(store, decisions(20))
    retrainer = RouterRetrainer(config, personas_on(store))

    learned = await retrainer.retrain()
    assert learned is not None and set(learned.aspects) == {"coherence"}
    after = get_router(config)
    assert after is not before and after.learned == learned
    assert after.load_times is before.load_times  # the loaded classifier, not a reload
    assert before.learned is None  # a turn still routing with the old router is unaffected
    route = after.route(UNCLEAR, draft="Update your CV first.")
    assert "learned from the LLM planner" in route.reasons["coherence"]

    written = learned_path(config).stat().st_mtime_ns
    assert await retrainer.retrain() is None  # no new decision: no refit
    assert learned_path(config).stat().st_mtime_ns == written and get_router(config) is after

    await keep(store, decisions(4))
    again = await retrainer.retrain()
    assert again is not None and again.examples == 24
    assert get_router(config).learned == again


async def test_a_retrain_that_fails_is_logged_and_leaves_the_router_as_it_was(tmp_path):
    config = RefinerConfig(home=tmp_path, routing_retrain_every_s=60)
    router = get_router(config)

    async def store_down():
        raise ConnectionError("the store does not answer")

    with capture_logs() as logs:
        assert await RouterRetrainer(config, store_down).retrain() is None
        assert await RouterRetrainer(config, personas_on(InMemoryStore())).retrain() is None
    failed = [e for e in logs if e["event"] == "routing.retrain_failed"]
    assert len(failed) == 1 and "does not answer" in failed[0]["error"]
    assert get_router(config) is router and not learned_path(config).exists()


async def test_the_server_retrains_in_the_background_while_turns_go_on(
    provider, http_config, monkeypatch
):
    """The fit runs off the event loop: while it is held up, a turn is answered."""
    assert RefinerConfig().routing_retrain_every_s is None  # opt-in
    real_fit, fitting, release = retrain.fit, threading.Event(), threading.Event()

    def held_fit(rows):
        fitting.set()
        assert release.wait(60)
        return real_fit(rows)

    monkeypatch.setattr(retrain, "fit", held_fit)
    config = http_config(routing_retrain_every_s=0.05, memory=False)
    store = InMemoryStore()
    await keep(store, decisions(20))
    async with Refiner(config, store=store) as refiner:
        app = create_app(config, refiner=refiner)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://redraft") as client,
        ):
            with capture_logs() as logs:
                assert await asyncio.to_thread(fitting.wait, 30)
                provider.script("planner", plan("factuality"))
                provider.script("factuality", PASS)
                answer = await asyncio.wait_for(
                    client.post(
                        "/v1/chat/completions",
                        json={"model": "m", "messages": UNCLEAR, "draft": "Update your CV first."},
                    ),
                    60,
                )
                assert not learned_path(config).exists()  # the fit is still held up
                release.set()
                for _ in range(600):
                    if any(e["event"] == "routing.retrained" for e in logs):
                        break
                    await asyncio.sleep(0.05)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Update your CV first."
        assert load_learned(config).examples == 20
        assert [e["examples"] for e in logs if e["event"] == "routing.retrained"] == [20]
