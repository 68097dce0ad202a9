"""The event loop that serves a refiner's synchronous API, on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop on a daemon thread (so an unclosed refiner never keeps the process from
    exiting), started on first use; every sync call of one refiner runs on it, so its
    connections and locks stay on one loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """`coroutine`'s result, run on the loop (started if it is not)."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=_run_forever, args=(self._loop,), name=self._name, daemon=True
                ).start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def stop(self, last: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run `last()` on the loop, then stop it; nothing when the loop never started."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(last(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_forever()
    loop.close()
