"""Opening redraft's databases: PostgreSQL at a URL, or a SQLite file, by one set of rules.

Threads, persona memory and the knowledge base may share one PostgreSQL; each opens it here, so
that everywhere an opening that gets no answer fails within `OPEN_TIMEOUT_S` (not in
psycopg_pool's 30 s, nor never, as libpq would wait), and a pool that could not open stops
reconnecting at once. Bounding each call once it is open is `redraft.waits`'s part.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, cast

if TYPE_CHECKING:
    import aiosqlite
    import psycopg
    from psycopg.rows import DictRow
    from psycopg_pool import AsyncConnectionPool

OPEN_TIMEOUT_S = 5.0
"""Longest wait for a database to accept a connection (a pool's too, for a free connection): a
database that stops answering fails a turn in seconds."""


def is_postgres(url: str | None) -> TypeGuard[str]:
    """Whether `url` names a PostgreSQL database (else the SQLite files under `home` are used)."""
    return url is not None and url.startswith(("postgres://", "postgresql://"))


async def postgres_pool(
    url: str, stack: contextlib.AsyncExitStack
) -> AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]:
    """An open pool of connections to `url` as LangGraph's savers and stores use them
    (autocommit, no prepared statements, rows as dicts), closed with `stack`. Raises
    psycopg_pool.PoolTimeout when the database does not answer within OPEN_TIMEOUT_S."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = cast(
        "AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]",  # the row_factory's rows
        AsyncConnectionPool(
            url,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=False,
            timeout=OPEN_TIMEOUT_S,
        ),
    )
    try:
        await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
    except BaseException:
        await pool.close()  # or it keeps reconnecting in the background
        raise
    stack.push_async_callback(pool.close)
    return pool


def postgres_connection(url: str) -> psycopg.Connection[Any]:
    """One connection to `url`, for blocking code (the knowledge base); `with` closes it."""
    import psycopg

    return psycopg.connect(url, connect_timeout=int(OPEN_TIMEOUT_S))


async def sqlite_connection(
    path: Path, stack: contextlib.AsyncExitStack, **options: Any
) -> aiosqlite.Connection:
    """A connection to the SQLite file at `path` (its folder made first), closed with `stack`;
    `options` go to sqlite3.connect (e.g. isolation_level)."""
    import aiosqlite

    path.parent.mkdir(parents=True, exist_ok=True)
    return await stack.enter_async_context(aiosqlite.connect(str(path), **options))
