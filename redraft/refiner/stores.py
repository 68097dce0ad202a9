"""Where a refiner keeps threads: the LangGraph checkpointer the config selects, and reading a
thread within a bound. (Personas live in the store `redraft.personas.store.open_store` opens.)"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import quote

from redraft.config import RefinerConfig
from redraft.db import postgres_pool, sqlite_connection
from redraft.errors import RefineError
from redraft.personas.scrub import secure_delete
from redraft.waits import outage_of, within

T = TypeVar("T")


async def open_checkpointer(config: RefinerConfig, stack: contextlib.AsyncExitStack) -> Any:
    """The thread checkpointer the config selects, closed with `stack`: in memory, PostgreSQL
    at `database_url`, or the SQLite file `sqlite_path` (deleted rows overwritten, so that
    `forget` leaves no text in it)."""
    kind = config.checkpointer_kind
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()
    if kind == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        if not config.database_url:
            raise RefineError("checkpointer=postgres needs REDRAFT_DATABASE_URL", step="threads")
        saver = AsyncPostgresSaver(await postgres_pool(config.database_url, stack))
        await saver.setup()
        return saver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    sqlite = AsyncSqliteSaver(await sqlite_connection(config.sqlite_path, stack))
    await secure_delete(sqlite.conn)
    return sqlite


def read_thread(config: RefinerConfig, reading: Awaitable[T], seconds: float) -> Awaitable[T]:
    """`reading` (of a thread) given up after `seconds`. On PostgreSQL it fails at once while
    the database is presumed down, an outage that the persona store and the knowledge base
    on the same database share."""
    if config.checkpointer_kind == "postgres" and config.database_url:
        return outage_of(config.database_url).call(reading, seconds)
    return within(reading, seconds)


def thread_key(user_id: str, thread_id: str) -> str:
    """The checkpointer's thread id. The user id is escaped so that no (user, thread) pair can
    name another's thread."""
    return f"{quote(user_id, safe='')}:{thread_id}"
