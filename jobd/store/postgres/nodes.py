"""The nodes of a cluster in PostgreSQL (the contract's :class:`~jobd.store.cluster.Membership`;
tables and functions in ``sql/migrate-4.sql``, whose header says how fencing serialises).

Renewals and takeovers use a connection of their own, so that they never wait behind a
group-commit batch or a burst of reads, opened again after a failure; the lease is what
decides whether that came in time. The nodes' notifications (``jobd_due``, ``jobd_nodes``)
are heard on the node's one connection for the cluster's news (:mod:`.news`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import psycopg
import structlog

from jobd.core.errors import StoreError
from jobd.store.cluster import Fenced, Membership
from jobd.store.postgres import queries as q
from jobd.store.postgres.locks import Fetch

log = structlog.get_logger("jobd.store")


class PgMembership(Membership):
    """Node ``node``'s row of ``nodes`` (see the contract's docstrings). ``fetch`` reads on the
    store's pool; ``fence(node, epoch)`` makes the store's writer check the token."""

    def __init__(
        self, url: str, fetch: Fetch, node: str, fence: Callable[[str, int], None]
    ) -> None:
        self._url = url
        self._fetch = fetch
        self._fence = fence
        self.node = node
        self.epoch: int | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = anyio.Lock()

    async def _execute(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``statement`` on the membership's own connection (opened again after a failure)."""
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                cur = await self._conn.execute(statement, params)
                return await cur.fetchall() if cur.description else []
            except psycopg.Error as exc:
                if getattr(exc, "sqlstate", None) == q.FENCED_SQLSTATE:
                    raise Fenced(str(exc).strip()) from exc
                if self._conn is not None and isinstance(exc, psycopg.OperationalError):
                    await self._conn.close()
                raise StoreError(f"cluster membership of node {self.node}: {exc}") from exc

    def _token(self) -> tuple[str, int]:
        if self.epoch is None:
            raise StoreError(f"node {self.node} has not joined the cluster")
        return self.node, self.epoch

    async def join(
        self, *, tags: Sequence[str], workers: int, run_queue_size: int, lease: float, api: str
    ) -> int:
        params = (self.node, list(tags), workers, run_queue_size, lease, api, os.getpid())
        rows = await self._execute(q.NODE_JOIN, (*params, socket.gethostname()))
        self.epoch = int(rows[0][0])
        self._fence(self.node, self.epoch)
        log.info("joined the cluster", node=self.node, epoch=self.epoch, lease=lease)
        return self.epoch

    async def renew(self) -> None:
        rows = await self._execute(q.NODE_RENEW, self._token())
        if not rows or not rows[0][0]:
            raise Fenced(
                f"node {self.node} (epoch {self.epoch}) lost its lease: it ran out, or "
                "another node took over"
            )

    async def leave(self) -> None:
        if self.epoch is not None:
            await self._execute(q.NODE_LEAVE, self._token())

    async def take_over(self) -> list[tuple[str, list[int]]]:
        rows = await self._execute(q.NODE_TAKEOVER, self._token())
        return [(str(r[0]), [int(i) for i in r[1] or ()]) for r in rows]

    async def next_expiry(self) -> float | None:
        rows = await self._execute(q.NEXT_EXPIRY, (self.node,))
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def nodes(self) -> list[dict[str, Any]]:
        keys = (
            "name",
            "tags",
            "state",
            "renewed_at",
            "lease",
            "epoch",
            "started_at",
            "workers",
            "run_queue_size",
            "api",
            "pid",
            "host",
            "running_jobs",
        )
        rows = await self._fetch(q.NODE_ROWS, ())
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def close(self, *, leave: bool) -> None:
        """At the store's close, after its last write: ``leave`` the cluster (a clean stop)."""
        with anyio.CancelScope(shield=True):
            if leave:
                try:
                    await self.leave()
                except StoreError as exc:
                    log.warning(
                        "could not leave the cluster; its lease will run out", error=str(exc)
                    )
            if self._conn is not None:
                await self._conn.close()
