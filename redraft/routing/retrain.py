"""The server's periodic retrain of the learned router (opt-in: `routing_retrain_every_s`).

What `redraft route train` does by hand, every so many seconds in a running server: read the LLM
planner decisions kept with `learn_routing`, refit, write the weights. The store is read on the
event loop (its API is async); the fit and the write run in a worker thread. The file is
replaced whole and the next `get_router` hands turns a router with the new weights that shares
the loaded model and classifier, so nothing reloads and a turn sees the old weights or the new,
never a mix. A retrain that fails is logged and tried again at the next period; turns never
wait for one. Decisions unchanged since the last fit are not refitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from redraft.config import RefinerConfig
from redraft.routing.learning import (
    Decision,
    Learned,
    fit,
    learned_path,
    stored_decisions,
    write_learned,
)
from redraft.routing.router import get_router

if TYPE_CHECKING:
    from redraft.personas.store import PersonaStore

log = structlog.get_logger("redraft.routing")


class RouterRetrainer:
    """Refits the learned router from the decisions in the store of `personas` (the refiner's
    `personas`, which opens the store on first use)."""

    def __init__(
        self, config: RefinerConfig, personas: Callable[[], Awaitable[PersonaStore]]
    ) -> None:
        self.config = config
        self._personas = personas
        self._fitted_on: tuple[int, str] | None = None

    async def run(self) -> None:
        """Retrain every `routing_retrain_every_s` seconds until cancelled."""
        every = self.config.routing_retrain_every_s
        assert every is not None
        log.info(
            "routing.retrain_scheduled", every_s=every, learn_routing=self.config.learn_routing
        )
        while True:
            await asyncio.sleep(every)
            await self.retrain()

    async def retrain(self) -> Learned | None:
        """One refit; the new weights, or None when there was nothing new or it failed."""
        started = time.perf_counter()
        try:
            store = (await self._personas()).store
            decisions, dropped = await stored_decisions(store, self.config)
            if not decisions or fingerprint(decisions) == self._fitted_on:
                log.debug("routing.retrain_skipped", decisions=len(decisions))
                return None
            learned = await asyncio.to_thread(self._fit_and_swap, decisions)
        except Exception as exc:  # the server keeps serving with the weights it has
            log.warning("routing.retrain_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        self._fitted_on = fingerprint(decisions)
        log.info(
            "routing.retrained",
            examples=learned.examples,
            learned=sorted(learned.aspects),
            older_deleted=dropped,
            seconds=round(time.perf_counter() - started, 3),
        )
        return learned

    def _fit_and_swap(self, decisions: list[Decision]) -> Learned:
        learned = fit(decisions)
        write_learned(learned, learned_path(self.config))
        get_router(self.config)  # the swap happens here, not in the next turn
        return learned


def fingerprint(decisions: list[Decision]) -> tuple[int, str]:
    """How many decisions, and the newest one's time: what a refit would change with."""
    return len(decisions), max(d.at for d in decisions).isoformat()


def start_retraining(
    config: RefinerConfig, personas: Callable[[], Awaitable[PersonaStore]]
) -> asyncio.Task[None] | None:
    """The retrain loop as a task on the running loop, when `routing_retrain_every_s` is set;
    the caller cancels it at shutdown."""
    if config.routing_retrain_every_s is None:
        return None
    retrainer = RouterRetrainer(config, personas)
    return asyncio.create_task(retrainer.run(), name="redraft-router-retrain")
