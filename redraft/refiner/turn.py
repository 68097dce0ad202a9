"""One turn as `Refiner.astream` runs it: the checked request, the settings it runs with, what it
has spent, and the graph's stream of it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from redraft.config import RefinerConfig
from redraft.graphs.deadline import GUARD_MARGIN_S, until
from redraft.graphs.refine import STREAM_REPLY
from redraft.llm.usage import UsageTracker
from redraft.log import text_fields
from redraft.personas.store import PersonaStore
from redraft.refiner.events import RESULT_MODES, STREAM_MODES
from redraft.refiner.stores import thread_key
from redraft.response_format import wants_json
from redraft.state import Degradation, RefineRequest, RefineResult

log = structlog.get_logger("redraft")


def run_config(
    request: RefineRequest, tracker: UsageTracker, *, reply_tokens: bool = True
) -> dict[str, Any]:
    """The LangGraph run config of a turn of `request`: its usage counted by `tracker`, in its
    thread when it has one."""
    configurable: dict[str, Any] = {STREAM_REPLY: reply_tokens}
    if request.thread_id is not None:
        configurable["thread_id"] = thread_key(request.user_id, request.thread_id)
    return {"callbacks": [tracker], "recursion_limit": 50, "configurable": configurable}


@dataclass
class Turn:
    """`settings` are the turn's own; once its thread is read, their deadline is what is left.
    `personas`: the user's persona store, None when the turn goes without memory; `generation`:
    the user's count of `forget`s as the turn started; `wants_events`: whether the caller reads the
    turn's events, or only its result (`arefine`)."""

    request: RefineRequest
    settings: RefinerConfig
    reply_tokens: bool
    wants_events: bool = True
    tracker: UsageTracker = field(default_factory=UsageTracker)
    started: float = field(default_factory=time.perf_counter)
    lost_thread: Degradation | None = None
    personas: PersonaStore | None = None
    generation: int = 0
    deadline_s: float | None = field(init=False)
    """The deadline as asked."""

    def __post_init__(self) -> None:
        self.deadline_s = self.settings.deadline_s
        # A JSON reply is checked before it goes out: a rewrite is not streamed as written.
        self.reply_tokens = self.reply_tokens and not wants_json(self.request.response_format)

    def run_config(self) -> dict[str, Any]:
        return run_config(self.request, self.tracker, reply_tokens=self.reply_tokens)

    def without_thread(self, problem: str) -> None:
        """Go on with the request's messages alone (said in `degraded`): the thread is lost."""
        self.lost_thread = Degradation(step="threads", reason=f"{problem}; the turn was not stored")
        self.request = self.request.model_copy(update={"thread_id": None})

    def thread_read(self) -> None:
        """The graph has what is left of the deadline once the thread is read."""
        if self.settings.deadline_s is not None:
            left = self.settings.deadline_s - (time.perf_counter() - self.started)
            self.settings = self.settings.model_copy(update={"deadline_s": max(left, 0.01)})

    def stream(self, graph: Any, graph_input: Any) -> AsyncIterator[tuple[str, Any]]:
        """The graph's `(mode, chunk)` stream of the turn. The nodes end the turn by its
        deadline; should anything not, it is stopped a margin later (TurnTimedOut)."""
        deadline_s = self.settings.deadline_s
        return until(
            graph.astream(
                graph_input,
                config=self.run_config(),
                context=self.settings,
                stream_mode=STREAM_MODES if self.wants_events else RESULT_MODES,
                # One checkpoint per turn, when it ends (or pauses for a question): fewer
                # writes, and a process killed mid-turn leaves the thread as it was.
                durability="exit" if self.request.thread_id is not None else None,
            ),
            None if deadline_s is None else deadline_s + GUARD_MARGIN_S,
        )

    def log_start(self) -> None:
        # Not a dump of the request on every turn; a logger configured by the application
        # may have no `is_enabled_for` (it filters itself).
        if getattr(log, "is_enabled_for", lambda _: True)(logging.DEBUG):
            log.debug(
                "turn.start",
                user_id=self.request.user_id,
                thread_id=self.request.thread_id,
                strategy=self.settings.strategy,
                **text_fields(messages=self.request.model_dump()["messages"]),
            )

    def log_done(self, result: RefineResult) -> None:
        log.info(
            "turn.done",
            user_id=self.request.user_id,
            changed=result.changed,
            llm_calls=result.usage.llm_calls,
            ms=round(result.timings["total"], 1),
            degraded=[d.step for d in result.degraded or []],
            aspects=result.plan.aspects,
            nodes={node: round(ms) for node, ms in result.timings.items() if node != "total"},
        )
