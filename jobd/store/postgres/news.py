"""The cluster's news in PostgreSQL (the contract's :class:`~jobd.store.news.News`):
NOTIFY through the store's readers, LISTEN on one connection of its own for every channel
the engine follows (the events of other nodes, the operations forwarded to this node).

A node's messages are sent by one task at a time, so they reach the others in the order
sent; a payload is at most :data:`~jobd.store.news.MAX_PAYLOAD` bytes (the engine packs
its messages to fit). A lost connection is opened again; what was sent meanwhile is not
heard, and ``("resync", "")`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import psycopg
import structlog
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from psycopg import sql

from jobd.core.errors import StoreError
from jobd.store.news import Message, News
from jobd.store.postgres import queries as q
from jobd.store.postgres.locks import Fetch

log = structlog.get_logger("jobd.store")
#: Seconds between two attempts to get the listening connection back.
RECONNECT_DELAY = 1.0


class PgNews(News):
    """The news of the cluster sharing the database at ``url``; ``fetch`` is the store's
    read (its pool of autocommit connections), on which NOTIFY is sent."""

    def __init__(self, url: str, fetch: Fetch) -> None:
        self._url = url
        self._fetch = fetch

    async def publish(self, channel: str, payloads: Sequence[str]) -> None:
        if payloads:
            await self._fetch(q.PUBLISH, (channel, list(payloads)))

    async def holders(self, job_ids: Sequence[int]) -> dict[int, str]:
        if not job_ids:
            return {}
        return {int(r[0]): str(r[1]) for r in await self._fetch(q.HOLDERS, (list(job_ids),))}

    async def follow(
        self,
        channels: Sequence[str],
        report: Callable[[Message], None],
        *,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except psycopg.Error as exc:
                if not started:
                    raise StoreError(f"cannot listen for the cluster's news: {exc}") from exc
                log.warning("cannot listen for the cluster's news; retrying", error=str(exc))
                await anyio.sleep(RECONNECT_DELAY)  # a retry's pace, not a synchronisation
                continue
            try:
                for channel in channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                if started:
                    report(("resync", ""))
                else:
                    started = True
                    task_status.started()
                await self._relay(conn, report)
            except psycopg.Error as exc:
                log.warning("lost the cluster's news; listening again", error=str(exc))
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close()

    @staticmethod
    async def _relay(conn: psycopg.AsyncConnection[Any], report: Callable[[Message], None]) -> None:
        async for notice in conn.notifies():
            report((notice.channel, notice.payload))
