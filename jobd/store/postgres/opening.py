"""Opening the PostgreSQL store: connect, take the node's name, migrate, run the writer.

:func:`open_store` is the backend's entry point (``jobd.store.open_store`` calls it for a
``postgresql://`` URL); the store itself is :class:`.store.PostgresStore`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from jobd.core.errors import StoreError
from jobd.store.postgres import queries as q
from jobd.store.postgres.migrate import migrate
from jobd.store.postgres.store import PostgresStore, safe_url

log = structlog.get_logger("jobd.store")
#: Seconds to wait for the name lock once an earlier run's session was ended (its backend
#: exits at once; a loaded server may take a moment).
EVICT_WAIT = 10.0


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the database {safe_url(url)}: {exc}") from exc


def named(url: str, node: str) -> str:
    """``url`` with ``application_name`` ``jobd node <node>`` for every session of the node
    (``pg_stat_activity`` shows whose each session is; a later run of the node finds the
    sessions an earlier one left behind by it), unless the URL names an application."""
    if psycopg.conninfo.conninfo_to_dict(url).get("application_name"):
        return url
    return psycopg.conninfo.make_conninfo(url, application_name=app_name(node))


def app_name(node: str) -> str:
    return f"jobd node {node}"


async def _lock_node(writer: psycopg.AsyncConnection[Any], node: str) -> bool:
    """Take the session lock on the node's name (False when another session holds it) and
    name the writer's session after the node (its claims: ``sql/migrate-9.sql``).

    The sessions of an earlier run of the node whose lease is over are ended first
    (``queries.NODE_EVICT``): when one of them held the name, the node starts as soon as
    the database is reachable again, instead of being refused until the server notices
    that session is dead."""
    ended = await _evict_earlier_run(writer, node)
    deadline = anyio.current_time() + (EVICT_WAIT if ended else 0.0)
    while not await _try_node_lock(writer, node):
        if anyio.current_time() >= deadline:
            return False
        await anyio.sleep(0.05)  # an ended session's backend is exiting: poll, bounded
    await writer.execute(q.SET_NODE, (node,))
    return True


async def _try_node_lock(writer: psycopg.AsyncConnection[Any], node: str) -> bool:
    row = await (await writer.execute(q.NODE_LOCK, (node,))).fetchone()
    return row is not None and bool(row[0])


async def _evict_earlier_run(writer: psycopg.AsyncConnection[Any], node: str) -> int:
    """End the sessions an earlier, finished run of ``node`` left on the server; how many.
    None is ended where none may be (a database not migrated yet, without ``nodes``; a
    role that may not end them): then a name still held refuses the start."""
    try:
        row = await (await writer.execute(q.NODE_EVICT, (node, app_name(node)))).fetchone()
    except psycopg.errors.UndefinedTable:  # a new database: no run before this one
        return 0
    except psycopg.Error as exc:
        log.info("could not end the sessions of an earlier run", node=node, error=str(exc))
        return 0
    ended = int(row[0]) if row is not None else 0
    if ended:
        log.warning(
            "ended sessions of an earlier run of this node whose lease is over (the server "
            "still thought them alive)",
            node=node,
            sessions=ended,
        )
    return ended


@asynccontextmanager
async def open_store(
    url: str, *, node: str = "jobd", readers: int = 4, single: bool = True
) -> AsyncIterator[PostgresStore]:
    """Connect to ``url`` as the node named ``node`` (creating the schema as needed) and run
    the writer task. Raises :class:`StoreError` when a daemon with the same node name is
    connected already (nodes with other names share the database). ``single=False`` skips
    that check (tests that open several stores on one database as nodes of their own)."""
    if single:
        url = named(url, node)
    writer = await _connect(url)
    try:
        try:
            if single and not await _lock_node(writer, node):
                raise StoreError(
                    f"another jobd daemon is using the database {safe_url(url)} as node "
                    f"{node!r}: give each node its own [daemon] node name (a session left by "
                    "this node's earlier run is ended once that run's lease is over)"
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
        if single:
            await _unlock_node(writer, node)
    finally:
        await writer.close()


async def _unlock_node(writer: psycopg.AsyncConnection[Any], node: str) -> None:
    """Give the node's name back before the writer's connection closes: a closed
    connection's backend exits after ``close()`` returns, and until it has, its session
    lock would refuse a restart of this node that follows at once (``systemctl restart``).
    Best effort: a connection already broken has lost the lock with its session."""
    with suppress(psycopg.Error):
        await writer.execute(q.NODE_UNLOCK, (node,))
