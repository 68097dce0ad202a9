"""Waiting on something that may never answer (a database in an outage)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """The result of `awaitable`, or TimeoutError once `seconds` have passed — without
    waiting for it to obey the cancellation. `asyncio.wait_for` waits: psycopg, cancelled
    mid-query on a connection that no longer answers, first tries to cancel the query over
    the network, so a 1 s health check took 15 s during an outage. The abandoned work is
    cancelled and left to end on its own."""
    task = asyncio.ensure_future(awaitable)
    if seconds is None:
        return await task
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_retrieve)
    raise TimeoutError(f"no answer within {seconds:g} s")


def _retrieve(task: asyncio.Future) -> None:
    """Read the abandoned task's outcome, so asyncio does not log it as never retrieved."""
    with contextlib.suppress(BaseException):
        task.exception()


class Outage:
    """What one process knows of a database's outage: after a call to it timed out, calls
    fail at once for `pause_s` instead of each waiting out its own timeout (a turn reads the
    thread, the persona memory and the knowledge base: 3 waits in a row made 11 s); then the
    next call tries again."""

    def __init__(self, pause_s: float = 5.0) -> None:
        self.pause_s = pause_s
        self._until = 0.0
        self._why = ""

    def check(self) -> None:
        """Raise DatabaseDown while an outage is presumed."""
        left = self._until - time.monotonic()
        if left > 0:
            raise DatabaseDown(f"{self._why}; not asked again for {left:.1f} s")

    def trip(self, why: str) -> None:
        self._until = time.monotonic() + self.pause_s
        self._why = why

    async def call(self, awaitable: Awaitable[T], seconds: float) -> T:
        """`within(awaitable, seconds)`, failing at once during an outage, and starting one
        when it times out."""
        try:
            self.check()
        except DatabaseDown:
            _close(awaitable)
            raise
        try:
            return await within(awaitable, seconds)
        except TimeoutError as exc:
            self.trip(f"the database did not answer within {seconds:g} s")
            raise DatabaseDown(str(exc)) from exc


class DatabaseDown(TimeoutError):
    """A database call that did not answer, or was not made during a presumed outage."""


_outages: dict[str, Outage] = {}


def outage_of(url: str) -> Outage:
    """The process's outage record of the database at `url` (the thread store, the persona
    store and the knowledge base share one when they share a database)."""
    return _outages.setdefault(url, Outage())


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)  # a coroutine never awaited: no warning
    if close is not None:
        close()
