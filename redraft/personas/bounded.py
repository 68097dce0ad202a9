"""A persona store whose every call gives up after a time: PostgreSQL that stops answering
(an outage, a partition) otherwise holds each turn as long as the outage lasts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langgraph.store.base import BaseStore, Op, Result

from redraft.waits import Outage


class BoundedStore(BaseStore):
    """`store` with each async batch bounded by `timeout_s` (TimeoutError past it, without
    waiting for the database to take the cancellation), failing at once while `outage` says
    the database is down. Every caller already treats a store error as degraded memory, so a
    turn in an outage loses memory, not its reply."""

    def __init__(self, store: BaseStore, timeout_s: float, outage: Outage) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.outage = outage

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self.store.batch(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self.outage.call(self.store.abatch(list(ops)), self.timeout_s)

    def __getattr__(self, name: str) -> Any:
        # index_config, supports_ttl, conn, ...: the wrapped store's
        return getattr(self.store, name)
