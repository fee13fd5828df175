"""Opening the PostgreSQL store: connect, take the node's name, migrate, run the writer.

:func:`open_store` is the backend's entry point (``jobd.store.open_store`` calls it for a
``postgresql://`` URL); the store itself is :class:`.store.PostgresStore`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool

from jobd.core.errors import StoreError
from jobd.store.postgres import queries as q
from jobd.store.postgres.migrate import migrate
from jobd.store.postgres.store import PostgresStore, safe_url


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the database {safe_url(url)}: {exc}") from exc


async def _lock_node(writer: psycopg.AsyncConnection[Any], node: str) -> bool:
    """Take the session lock on the node's name (False when another session holds it) and
    name the writer's session after the node (its claims: ``sql/migrate-9.sql``)."""
    row = await (await writer.execute(q.NODE_LOCK, (node,))).fetchone()
    if row is None or not row[0]:
        return False
    await writer.execute(q.SET_NODE, (node,))
    return True


@asynccontextmanager
async def open_store(
    url: str, *, node: str = "jobd", readers: int = 4, single: bool = True
) -> AsyncIterator[PostgresStore]:
    """Connect to ``url`` as the node named ``node`` (creating the schema as needed) and run
    the writer task. Raises :class:`StoreError` when a daemon with the same node name is
    connected already (nodes with other names share the database). ``single=False`` skips
    that check (tests that open several stores on one database as nodes of their own)."""
    writer = await _connect(url)
    try:
        try:
            if single and not await _lock_node(writer, node):
                raise StoreError(
                    f"another jobd daemon is using the database {safe_url(url)} as node "
                    f"{node!r}: give each node its own [daemon] node name"
                )
            await migrate(writer)
        except psycopg.Error as exc:
            raise StoreError(f"cannot set up the database {safe_url(url)}: {exc}") from exc
        pool = AsyncConnectionPool(
            url, min_size=1, max_size=readers, kwargs={"autocommit": True}, open=False
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:
            raise StoreError(f"cannot connect to the database {safe_url(url)}: {exc}") from exc
        store = PostgresStore(url, writer, pool, node if single else None)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(store._writer_loop)
                try:
                    yield store
                finally:
                    with anyio.CancelScope(shield=True):
                        if store._broken is None:
                            await store.flush()
                        store._closed = True
                        tg.cancel_scope.cancel()
                        if store._membership is not None:
                            await store._membership.close(leave=store._broken is None)
        finally:
            await pool.close()
    finally:
        await writer.close()
