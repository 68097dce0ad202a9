"""Forgetting on disk: after `forget` deletes a user's rows, no copy of their text may stay in
a SQLite file or beside it.

Both SQLite connections (threads, personas) run with `secure_delete`, so a deleted row's bytes
are overwritten in the page that held them. In WAL mode those pages reach the database file
only at a checkpoint, and the WAL keeps the old page images (the text) until it is reset —
with a server holding the files open, that is when it stops. So forget ends with a TRUNCATE
checkpoint on each file it touched: the pages are written back and the WAL is emptied.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger("redraft.personas")

CHECKPOINT_WAIT_S = 10.0
"""How long forget retries a checkpoint that a reader in another process holds up."""


async def secure_delete(conn: Any) -> None:
    """Deleted rows are overwritten with zeros (an aiosqlite connection)."""
    await conn.execute("PRAGMA secure_delete = ON")


async def truncate_wal(*holders: Any) -> list[str]:
    """A TRUNCATE checkpoint on the SQLite connection of each holder (a LangGraph saver or
    store: `.conn` and `.lock`); others (memory, PostgreSQL) are skipped. Returns the files
    whose WAL could not be emptied in CHECKPOINT_WAIT_S (logged: the text is still there)."""
    import aiosqlite

    stuck = []
    for holder in holders:
        conn = getattr(holder, "conn", None)
        if not isinstance(conn, aiosqlite.Connection):
            continue
        async with holder.lock:
            if not await _checkpoint(conn):
                async with conn.execute("PRAGMA database_list") as cursor:
                    main = await cursor.fetchone()
                assert main is not None, "SQLite always lists the main database"
                stuck.append(main[2])
    for name in stuck:
        log.warning("forget.wal_busy", file=name, hint="a reader held it; the WAL still holds text")
    return stuck


async def _checkpoint(conn: Any) -> bool:
    deadline = asyncio.get_running_loop().time() + CHECKPOINT_WAIT_S
    while True:
        async with conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cursor:
            busy, _, _ = await cursor.fetchone()
        if not busy:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
