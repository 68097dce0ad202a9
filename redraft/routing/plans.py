"""From a route to the turn's Plan, for the `router` and `hybrid` planners.

A plan schedules only critics that are registered and configured; the route's scores,
sensitivity and domain are kept whole (the safety critic reads the domain), so `scores` holds
`safety` even when no safety critic runs. The turn's critics from user code are routed too
(`Router.route`'s `critics`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import structlog
from langgraph.store.base import BaseStore

from redraft.agents.critic import Critic
from redraft.config import RefinerConfig
from redraft.embeddings import wait_for_load
from redraft.routing.learning import record_decision
from redraft.routing.router import ASPECTS, Route, get_router
from redraft.state import Plan, TurnState

log = structlog.get_logger("redraft")


async def route_turn(
    config: RefinerConfig,
    state: TurnState,
    persona: Sequence[str],
    critics: Sequence[Critic] = (),
) -> Route:
    """Route the graph's turn off the event loop (the first call also loads the model);
    `critics`: the turn's critics, for those the router has no rules of its own for."""
    router = get_router(config)
    return await asyncio.to_thread(
        router.route,
        state["history"],
        persona=persona,
        knowledge=state["knowledge"],
        draft=state.get("reply") or None,
        critics=critics,
    )


_loads: dict[int, Future[None]] = {}
_loads_lock = threading.Lock()


def start_router_load(config: RefinerConfig) -> Future[None]:
    """Load the config's router (the embedding model, the examples, the classifier) in a
    background thread, once; returns at once. A failed load is tried again by a later call."""
    router = get_router(config)
    with _loads_lock:
        loading = _loads.get(id(router))
        if loading is None or (loading.done() and loading.exception() is not None):
            loading = _loads[id(router)] = Future()

            def load() -> None:
                try:
                    router.load()
                except BaseException as exc:
                    loading.set_exception(exc)
                else:
                    loading.set_result(None)

            threading.Thread(target=load, name="redraft-router-load").start()
        return loading


async def router_ready(config: RefinerConfig, wait_s: float | None) -> bool:
    """Whether the router can route now; starts its load in the background if needed and
    waits at most `wait_s` seconds (None: until loaded, off the event loop). A failed load is
    raised."""
    if get_router(config).load_times is not None:
        return True
    return await wait_for_load(start_router_load(config), wait_s)


_prefetching: set[asyncio.Task] = set()  # held until done (the loop keeps only weak refs)


def prefetch_route(
    config: RefinerConfig, history: Sequence[dict[str, str]], persona: Sequence[str]
) -> None:
    """Start embedding the turn's routing texts in a worker thread and return at once, so that
    it overlaps the draft. Any failure is left for `route_turn` to meet and report."""
    try:
        router = get_router(config)
    except Exception:
        return
    if router.load_times is None:  # loading is not prefetching: it goes to the background
        start_router_load(config)
        return
    task = asyncio.ensure_future(asyncio.to_thread(router.prefetch, history, persona))
    _prefetching.add(task)
    task.add_done_callback(_prefetched)


def _prefetched(task: asyncio.Task) -> None:
    _prefetching.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the route reports it


def plan_from_route(route: Route, available: Sequence[str]) -> Plan:
    """The router's decision as the plan: its aspects that have a critic, highest score first."""
    return Plan(
        aspects=[a for a in route.aspects if a in available],
        reasons=dict(route.reasons),
        source="router",
        scores=dict(route.scores),
        sensitive=route.sensitive,
        domain=route.domain,
    )


def hybrid_plan(llm: Plan, route: Route, available: Sequence[str]) -> Plan:
    """The LLM planner decided an unclear turn; a sensitive route still keeps safety."""
    aspects = list(llm.aspects)
    reasons = {**route.reasons, **llm.reasons}
    if route.sensitive and "safety" in available and "safety" not in aspects:
        aspects.insert(0, "safety")
        reasons["safety"] = f"{route.reasons['safety']} (kept by the router: recall first)"
    return Plan(
        aspects=aspects,
        reasons=reasons,
        source="llm",
        scores=dict(route.scores),
        sensitive=route.sensitive,
        domain=route.domain,
    )


async def keep_decision(
    store: BaseStore | None, config: RefinerConfig, route: Route, llm: Plan
) -> None:
    """With `learn_routing` on, keep the LLM planner's own choice on a turn the router handed
    it, as a labelled example for `redraft route train` (features and aspects, no text). A
    store that fails costs the example, never the turn; the log says so."""
    if store is None or not config.learn_routing:
        return
    try:
        # Only the router's own aspects are learned (a user critic's may come and go).
        aspects = [a for a in llm.aspects if a in ASPECTS]
        await record_decision(store, config, route.features, aspects)
    except Exception as exc:
        log.warning("routing decision not kept", error=str(exc))
