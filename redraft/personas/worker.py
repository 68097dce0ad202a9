"""Background memory work: in order per user, concurrently across users, never in a reply's way.

Each user's jobs form a chain, so a job sees the store its predecessor left (an extraction never
races the previous turn's, and `forget` runs after whatever was pending). `drain()` waits for
everything, which makes tests and shutdown deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from redraft.log import text_fields

log = structlog.get_logger("redraft")

T = TypeVar("T")


class MemoryWorker:
    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pending(self) -> int:
        """Jobs scheduled or running."""
        return len(self._tasks)

    def _chain(self, user_id: str, job: Callable[[], Awaitable[T]], name: str) -> asyncio.Task[T]:
        previous = self._tails.get(user_id)

        async def run() -> T:
            if previous is not None:
                await asyncio.wait([previous])  # its outcome is its own business
            return await job()

        task = asyncio.create_task(run(), name=f"redraft-memory-{name}")
        self._tails[user_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(user_id, done))
        return task

    def _finished(self, user_id: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._tails.get(user_id) is task:
            del self._tails[user_id]

    def submit(self, user_id: str, job: Callable[[], Awaitable[Any]], name: str) -> None:
        """Run `job` in the background; its failure is logged, never raised."""

        async def guarded() -> None:
            try:
                await job()
            except Exception as exc:
                # The message may quote persona text: only at DEBUG.
                log.warning(
                    "memory.failed",
                    job=name,
                    user_id=user_id,
                    error=type(exc).__name__,
                    **text_fields(detail=str(exc)),
                )

        self._chain(user_id, guarded, name)

    async def run(self, user_id: str, job: Callable[[], Awaitable[T]], name: str) -> T:
        """Run `job` after the user's pending jobs and return its result (errors propagate).
        A caller that is cancelled does not cancel the job."""
        return await asyncio.shield(self._chain(user_id, job, name))

    async def drain(self) -> None:
        """Wait until every job, including ones scheduled meanwhile, has finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
