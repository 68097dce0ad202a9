"""The turn's deadline (`deadline_s`): the time left, and provider calls bounded by it.

`load_context` stamps the turn's start in the state (`started`, wall-clock seconds, so the stamp
means the same to every node and to the critics that `Send` starts); each node bounds its calls
with `by_deadline`. A call still running at the deadline is cancelled and the node degrades as
it does for any failure: a critic is skipped, the merge keeps the best reply so far, a draft
that cannot be written raises `RefineError`. Critics stop early enough to leave the merge a
share of the budget, so that the merge can still run with the critiques that arrived.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

from redraft.config import RefinerConfig

T = TypeVar("T")

MERGE_SHARE = 0.25
"""Share of `deadline_s` the critics leave for the merge."""

GUARD_MARGIN_S = 0.5
"""`Refiner.astream` stops a turn this long after its deadline whatever it is doing (a backstop:
the nodes themselves end on time)."""


class DeadlineExceeded(TimeoutError):
    """The turn's deadline passed before this step finished."""


def time_left(turn: Mapping[str, Any], cfg: RefinerConfig, *, leave: float = 0.0) -> float | None:
    """Seconds left for this step (negative once past), or None when there is no deadline.

    `turn` is the state or a critic's task (its `started`); `leave` is the share of the
    deadline to keep for later steps.
    """
    started = turn.get("started")
    if cfg.deadline_s is None or started is None:
        return None
    return started + cfg.deadline_s * (1 - leave) - time.time()


async def by_deadline(
    call: Awaitable[T], turn: Mapping[str, Any], cfg: RefinerConfig, *, leave: float = 0.0
) -> T:
    """Await `call`, given up when the time left runs out (raises DeadlineExceeded).

    The call runs in a task of its own, cancelled at the deadline; the step does not wait for
    the cancellation to be obeyed (LangChain's streaming swallows one now and then).
    """
    left = time_left(turn, cfg, leave=leave)
    if left is None:
        return await call
    cut = DeadlineExceeded(f"cut at the turn's deadline ({cfg.deadline_s:g} s)")
    if left <= 0:
        if inspect.iscoroutine(call):
            call.close()
        raise cut
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=left)
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_forget)
    if not done:
        raise cut
    return task.result()


def _forget(task: asyncio.Future) -> None:
    """An abandoned call's outcome is of no interest (read, so asyncio does not report it)."""
    if not task.cancelled():
        task.exception()


class TurnTimedOut(TimeoutError):
    """A turn ran past its deadline plus the guard's margin and was stopped."""


async def until(stream: AsyncIterator[T], seconds: float | None) -> AsyncIterator[T]:
    """The items of `stream` until `seconds` have passed; then it is cancelled and TurnTimedOut
    is raised. The stream runs in a task of its own, so the cancellation can only ever hit the
    stream, never the code consuming these items."""
    if seconds is None:
        async for item in stream:
            yield item
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in stream:
                queue.put_nowait(("item", item))
        except Exception as exc:
            queue.put_nowait(("error", exc))
        else:
            queue.put_nowait(("end", None))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), max(0.0, end - loop.time()))
            except TimeoutError:
                raise TurnTimedOut(f"stopped {seconds:g} s after it started") from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        task.cancel()  # not awaited: a step that ignores cancellation must not hold the turn
