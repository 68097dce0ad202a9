"""A FakeProvider in a process of its own, driven from the benchmark process.

In the benchmark's own process the provider's HTTP work (uvicorn, FastAPI, JSON, SSE) would
share the interpreter and its GIL with redraft, and count as redraft's time. Here it runs in a
child process (a `multiprocessing` manager); the benchmark scripts it and reads its request log
through a proxy. Scripts are plain data (dicts and strings), since they cross the process
boundary. Times in the log are `time.monotonic()`, which is system-wide on Linux.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from multiprocessing.managers import BaseManager
from typing import Any

from redraft.testing import FakeProvider


@dataclass(frozen=True)
class Call:
    """One request as the provider saw it: who sent it, when, and the tokens it counted."""

    agent: str
    started: float
    ended: float
    status: int
    prompt_tokens: int
    completion_tokens: int
    stream: bool

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class _Provider:
    """Lives in the child process; every method is called through the manager's proxy."""

    def __init__(self, latency_s: float, tokens_per_s: float | None) -> None:
        self._fake = FakeProvider(latency_s=latency_s, tokens_per_s=tokens_per_s).start()

    def base_url(self) -> str:
        return self._fake.base_url

    def configure(self, latency_s: float, tokens_per_s: float | None) -> None:
        self._fake.latency_s, self._fake.tokens_per_s = latency_s, tokens_per_s

    def script(self, agent: str, *responses: Any) -> None:
        self._fake.script(agent, *responses)

    def set_default(self, agent: str, response: Any) -> None:
        self._fake.set_default(agent, response)

    def reset(self) -> None:
        self._fake.reset()

    def count(self) -> int:
        return len(self._fake.calls)

    def calls(self, since: int = 0) -> list[dict[str, Any]]:
        """The log from call number `since` on; calls still running are left out."""
        return [
            asdict(
                Call(
                    agent=c.agent,
                    started=c.started,
                    ended=c.ended,
                    status=c.status or 0,
                    prompt_tokens=(c.usage or {}).get("prompt_tokens", 0),
                    completion_tokens=(c.usage or {}).get("completion_tokens", 0),
                    stream=c.stream,
                )
            )
            for c in list(self._fake.calls)[since:]
            if c.ended is not None
        ]

    def stop(self) -> None:
        self._fake.stop()


class _Manager(BaseManager):
    pass


_Manager.register("Provider", _Provider)


class RemoteProvider:
    """The benchmark's handle on the child's FakeProvider."""

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy
        self.base_url: str = proxy.base_url()

    def configure(self, *, latency_s: float, tokens_per_s: float | None) -> None:
        self._proxy.configure(latency_s, tokens_per_s)

    def script(self, agent: str, *responses: Any) -> None:
        self._proxy.script(agent, *responses)

    def set_default(self, agent: str, response: Any) -> None:
        self._proxy.set_default(agent, response)

    def reset(self) -> None:
        self._proxy.reset()

    def count(self) -> int:
        return self._proxy.count()

    def calls(self, since: int = 0) -> list[Call]:
        return [Call(**row) for row in self._proxy.calls(since)]


@contextlib.contextmanager
def remote_provider(
    latency_s: float = 0.0, tokens_per_s: float | None = None
) -> Iterator[RemoteProvider]:
    """Start a FakeProvider in a child process (spawned: no state inherited from this one)."""
    manager = _Manager(ctx=multiprocessing.get_context("spawn"))
    manager.start()
    try:
        proxy = manager.Provider(latency_s, tokens_per_s)  # type: ignore[attr-defined]
        try:
            yield RemoteProvider(proxy)
        finally:
            with contextlib.suppress(Exception):
                proxy.stop()
    finally:
        manager.shutdown()
