"""Asset locks in PostgreSQL, shared by the nodes of a cluster (the contract's
:class:`~jobd.store.contract.AssetLocks`; the tables and functions are in
``sql/migrate-3.sql``, whose header says how they serialise and wake).

Requests and releases are statements of a unit of work (:class:`.units.PgUnit`), so they
land with the transition they belong to; the writer applies a batch holding any of them
through ``jobd_apply_locked``, which first takes the advisory locks of every asset they
touch, in order. Grants are NOTIFYed on the channel of the requesting node
(:func:`.queries.lock_channel`, ``sql/migrate-22.sql``): :meth:`PgAssetLocks.listen` keeps a
connection of its own LISTENing there, and polls only as a fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import anyio
import psycopg
import structlog
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from jobd.core.errors import StoreError
from jobd.store.contract import AssetLocks, Changes, LockEvent, LockStart
from jobd.store.postgres import queries as q
from jobd.store.postgres.units import PgUnit

log = structlog.get_logger("jobd.store")
#: Seconds between two attempts to get the listening connection back.
RECONNECT_DELAY = 1.0
EXCLUSIVE, SHARED = "exclusive", "shared"
#: The store's read: a statement and its parameters to the rows (autocommit, own connection).
Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]


class PgAssetLocks(AssetLocks):
    """Node ``node``'s view of the cluster's asset locks (see the contract's docstrings)."""

    def __init__(self, url: str, fetch: Fetch, node: str) -> None:
        self._url = url
        self._fetch = fetch
        self.node = node

    def request(
        self,
        unit: Changes,
        job_id: int,
        exclusive: Sequence[str],
        shared: Sequence[str],
        since: float,
        start: LockStart | None = None,
    ) -> Changes:
        return cast(PgUnit, unit).lock_request(job_id, self.node, exclusive, shared, since, start)

    def release(self, unit: Changes, job_id: int) -> Changes:
        return cast(PgUnit, unit).lock_release(job_id, self.node)

    def withdraw(self, unit: Changes, job_id: int) -> Changes:
        return cast(PgUnit, unit).lock_release(job_id, self.node, "lock_withdraw")

    def unstart(self, unit: Changes, job_id: int) -> Changes:
        return cast(PgUnit, unit).lock_release(job_id, self.node, "lock_unstart")

    def regrant(self, unit: Changes, job_id: int) -> Changes:
        return cast(PgUnit, unit).lock_regrant(job_id)

    async def release_node_locks(self, node: str) -> list[int]:
        rows = await self._fetch(q.RELEASE_NODE_LOCKS, (node,))
        return list(rows[0][0]) if rows and rows[0][0] else []

    async def mine(self) -> dict[int, bool]:
        return {r[0]: bool(r[1]) for r in await self._fetch(q.NODE_LOCKS, (self.node,))}

    async def starts(self) -> dict[int, LockStart]:
        rows = await self._fetch(q.NODE_STARTS, (self.node,))
        return {job: LockStart(step, attempts, at) for job, at, step, attempts in rows}

    async def snapshot(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for asset, job_id, exclusive, held, node, since, granted_at in await self._fetch(
            q.LOCK_ROWS, ()
        ):
            if current is None or current["asset"] != asset:
                current = {"asset": asset, "holders": [], "waiters": []}
                out.append(current)
            entry = {
                "job_id": job_id,
                "mode": EXCLUSIVE if exclusive else SHARED,
                "node": node,
                "since": granted_at if held else since,
            }
            current["holders" if held else "waiters"].append(entry)
        return out

    async def listen(
        self,
        report: Callable[[LockEvent], None],
        poll: float,
        *,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except psycopg.Error as exc:
                if not started:  # at start-up: the node cannot run (its locks are there)
                    raise StoreError(f"cannot listen for lock grants: {exc}") from exc
                log.warning("cannot listen for lock grants; retrying", error=str(exc))
                await anyio.sleep(RECONNECT_DELAY)  # a retry's pace, not a synchronisation
                continue
            try:
                await conn.execute(q.listen_locks(self.node))
                if not started:
                    started = True
                    task_status.started()
                report(("resync", 0))  # what was granted or to recheck while nobody listened
                await self._relay(conn, report, poll)
            except psycopg.Error as exc:
                log.warning("lost the lock-grant connection; reconnecting", error=str(exc))
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close()

    async def _relay(
        self, conn: psycopg.AsyncConnection[Any], report: Callable[[LockEvent], None], poll: float
    ) -> None:
        while True:
            async for notice in conn.notifies(timeout=poll):
                event = parse(notice.payload, self.node)
                if event is not None:
                    report(event)
            report(("poll", 0))


def parse(payload: str, node: str) -> LockEvent | None:
    """``granted <job> <node>``, ``recheck <job> <node>`` or ``started <job> <node> <at>
    <step> <attempts>`` (``-`` for no step) as an event, when for ``node``."""
    kind, job, target, *more = [*payload.split(" "), "", ""]
    if target != node or kind not in ("granted", "recheck", "started"):
        return None
    try:
        if kind != "started":
            return kind, int(job)
        at, step, attempts = more[:3]
        return kind, int(job), LockStart(_int(step), _int(attempts), float(at))
    except ValueError:
        raise StoreError(f"unreadable lock notification {payload!r}") from None


def _int(text: str) -> int | None:
    return None if text == "-" else int(text)
