"""PostgreSQL persistence: the truth about every job, shared by the nodes of a cluster.

Writes use **group commit**, as the SQLite store does: callers hand in units of
work; one writer task takes every unit queued while the previous transaction
ran and applies them all in ONE transaction: one call of the schema's
function ``jobd_apply`` with the whole batch as JSON (one statement, one round
trip), then wakes the callers. A unit whose guard matches no row is skipped by
the function and reported, without a savepoint or an error, and the rest of the
batch is applied. A unit the database refuses (an error, not
a guard) aborts the batch's transaction: then each unit of that batch is applied
again in a transaction of its own, so that only the refused one fails.

Reads use a small pool of other connections (autocommit): they see committed
data only and never wait behind a batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, cast

import anyio
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from jobd.core.errors import StoreError
from jobd.core.models import HistoryEntry, Job, Reservation, Step
from jobd.core.states import JobState
from jobd.store.cluster import Fenced, Membership
from jobd.store.contract import AssetLocks, Changes, GuardFailed, ReservationRow, Store
from jobd.store.postgres import queries as q
from jobd.store.postgres.bulk import payload, plan
from jobd.store.postgres.filters import read_filtered
from jobd.store.postgres.locks import PgAssetLocks
from jobd.store.postgres.many import ManyUnit, take
from jobd.store.postgres.news import PgNews
from jobd.store.postgres.nodes import PgMembership
from jobd.store.postgres.rules import ReservationNews, firing_claimed, refusal, set_capacities
from jobd.store.postgres.units import PgUnit
from jobd.store.reads import DuePlan, JobFilter
from jobd.store.soon import Completion, Done, queue_soon
from jobd.store.sqlite.rows import job_from_row, reservation_from_row, step_from_row

log = structlog.get_logger("jobd.store")
#: Seconds without a write after which the writer checks that its connection still works.
PROBE_INTERVAL = 2.0
_Queued = tuple[PgUnit, "asyncio.Future[None] | Completion | None"]
#: What a unit came to: applied (None), its guard failed, or the database refused it (a
#: message, or the error to raise: a booking conflict).
_Outcome = tuple[str, str] | Exception | None
#: Attempts at a unit that deadlocks with another node's writes, before it fails.
_DEADLOCK_ATTEMPTS = 3
_GUARD_FAILED = ("guard", "the job is no longer in the state it was written for")


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<an unreadable PostgreSQL URL>"
    info.pop("password", None)
    info.pop("application_name", None)  # jobd's own naming of a node's sessions: noise here
    return psycopg.conninfo.make_conninfo("", **info)


class PostgresStore(Store):
    """The job database on PostgreSQL. Create with :func:`open_store`; the contract's
    docstrings (:class:`jobd.store.contract.Store`) say what each method promises."""

    def __init__(
        self,
        url: str,
        writer: psycopg.AsyncConnection[Any],
        pool: AsyncConnectionPool,
        node: str | None = None,
    ):
        self.url = url
        #: This store's node of a cluster (None: a store that is no node, as the tests' own).
        self.node = node
        #: ``(node, epoch)`` once the node joined: every batch checks it (the fencing token).
        self._token: tuple[str, int] | None = None
        self._membership: PgMembership | None = None
        self._conn = writer
        self._pool = pool
        self._queue: list[_Queued] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._broken: StoreError | None = None
        self._news = ReservationNews(url)
        self._news.own_pid = writer.info.backend_pid
        self.batches = 0
        self.units = 0
        #: Batches applied by ``jobd_apply_bulk`` (the others: ``jobd_apply``).
        self.bulk_batches = 0

    # ----------------------------------------------------------------- writing
    def changes(self) -> PgUnit:
        return PgUnit()

    async def commit(self, changes: Changes, *, urgent: bool = False) -> None:
        if self._closed or self._broken:
            raise self._broken or StoreError("the store is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(cast(PgUnit, changes), fut)
        await fut

    def commit_soon(self, changes: Changes, done: Done) -> None:
        closed = StoreError("the store is closed") if self._closed else None
        queue_soon(self._enqueue, changes, done, self._broken or closed)

    def commit_nowait(self, changes: Changes) -> None:
        if not self._closed and not self._broken:
            self._enqueue(cast(PgUnit, changes), None)

    def _enqueue(self, unit: PgUnit, fut: asyncio.Future[None] | Completion | None) -> None:
        # ``urgent`` needs nothing more here: the writer takes whatever is queued as soon as
        # its transaction in flight is done, never waiting for a batch to fill.
        self._queue.append((unit, fut))
        self._idle.clear()
        self._wakeup.set()

    async def flush(self) -> None:
        await self.commit(PgUnit())

    async def transition_many(
        self,
        job_ids: Sequence[int],
        from_state: JobState,
        to_state: JobState,
        at: float,
        cause: str,
        actor: str,
        *,
        release: bool = False,
    ) -> list[int]:
        """One set-wise statement in one transaction, whatever the number of ids (:mod:`.many`:
        on a StoreError nothing moved), in its place among the units queued."""
        if not job_ids:
            return []
        unit = ManyUnit(job_ids, from_state, to_state, at, cause, actor, release)
        await self.commit(unit)
        return unit.moved

    async def _writer_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Apply batches as they come; when idle, check the connection every
        :data:`PROBE_INTERVAL` s. Raises :class:`StoreError` once the database is lost: the
        task group of :func:`open_store` then ends what runs on this store (the daemon
        stops, and its service manager starts it again), rather than a daemon going on
        with steps whose outcomes it can no longer record."""
        task_status.started()
        while True:
            with anyio.move_on_after(PROBE_INTERVAL) as idle:
                await self._wakeup.wait()
            if idle.cancelled_caught:
                await self._probe()
                continue
            self._wakeup.clear()
            await self._drain()
            if self._broken is not None:
                raise self._broken

    async def _probe(self) -> None:
        try:
            await self._conn.execute(q.PROBE)
        except psycopg.Error as exc:
            broken = StoreError(f"lost the database {safe_url(self.url)}: {exc}")
            self._fail_all(broken, [])
            raise broken from exc

    async def _drain(self) -> None:
        while self._queue and not self._broken:
            batch, self._queue = take(self._queue)  # a set-wise unit alone
            try:
                outcomes = await self._apply([unit for unit, _ in batch])
            except StoreError as exc:
                self._fail_all(exc, batch)
                break
            self._resolve(batch, outcomes)
        self._idle.set()

    async def _apply(self, units: list[PgUnit], attempt: int = 1) -> list[_Outcome]:
        """Apply ``units`` in one transaction; on a refusal, each in a transaction of its own.
        Raises :class:`Fenced` when the node's fencing token was refused (nothing applied)."""
        try:
            return await self._transaction(units)
        except psycopg.errors.TransactionRollback as exc:
            # A deadlock with another node's batch (bookings of resources in another order):
            # PostgreSQL rolled this one back, and it may simply be applied again.
            if len(units) == 1:
                if attempt < _DEADLOCK_ATTEMPTS:
                    return await self._apply(units, attempt + 1)
                return [("error", f"write failed: {exc}")]
            log.info("a batch deadlocked; applying its units one by one", units=len(units))
        except psycopg.OperationalError as exc:
            raise StoreError(f"lost the database {safe_url(self.url)}: {exc}") from exc
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) == q.FENCED_SQLSTATE:
                raise Fenced(str(exc).strip()) from exc
            if len(units) == 1:
                return [self._refused(exc, units[0])]
            log.info("a batch was refused; applying its units one by one", units=len(units))
        outcomes: list[_Outcome] = []
        for unit in units:
            outcomes += await self._apply([unit])
        return outcomes

    def _refused(self, exc: psycopg.Error, unit: PgUnit) -> _Outcome:
        if firing_claimed(exc):
            return ("guard", "another node recorded this schedule firing first")
        conflict = refusal(exc, unit)
        if conflict is None:
            return ("error", f"write failed: {exc}")
        self._news.add(conflict.job_ids, refused=True)  # bookings this node's index had not seen
        return conflict

    async def _transaction(self, units: list[PgUnit]) -> list[_Outcome]:
        """One statement, one round trip, its own transaction (autocommit): ``jobd_apply``
        of the whole batch (``jobd_apply_bulk`` of it grouped by statement when
        :func:`.bulk.group` allows, the same writes in fewer executor runs); it answers
        with the units whose guard matched no row."""
        token = self._token or ()
        if isinstance(units[0], ManyUnit):  # alone in its batch (``take``)
            await units[0].apply(self._conn, token)
            self.batches, self.units = self.batches + 1, self.units + 1
            return [None]
        statement, params, order = plan(units, payload)
        if statement in (q.APPLY_BULK, q.APPLY_SPLIT, q.APPLY_SPLIT_DEPS):
            self.bulk_batches += 1
        if token:  # a node's batch: its fencing token is checked first, in its transaction
            statement += q.FENCE
        cur = await self._conn.execute(statement, (*params, *token))
        row = await cur.fetchone()
        failed = {order[i] for i in row[0]} if row is not None else set()
        self.batches += 1
        self.units += len(units)
        return [_GUARD_FAILED if i in failed else None for i in range(len(units))]

    def _resolve(self, batch: list[_Queued], outcomes: list[_Outcome]) -> None:
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if fut is None or fut.done():
                continue
            if outcome is None:
                fut.set_result(None)
            elif isinstance(outcome, Exception):
                fut.set_exception(outcome)
            elif outcome[0] == "guard":
                fut.set_exception(GuardFailed(outcome[1]))
            else:
                fut.set_exception(StoreError(outcome[1]))

    def _fail_all(self, exc: StoreError, batch: list[_Queued]) -> None:
        self._broken = exc
        log.error("the store can take no more writes", error=str(exc))
        for _, fut in batch + self._queue:
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        self._queue = []

    async def set_capacities(self, capacities: Mapping[str, int]) -> None:
        """The slots of each resource (``rules.set_capacities``)."""
        try:
            async with self._pool.connection() as conn:
                await set_capacities(conn, capacities)
        except psycopg.Error as exc:
            raise StoreError(f"cannot write the capacities to {safe_url(self.url)}: {exc}") from exc

    async def follow_reservations(
        self,
        changed: Callable[[list[int] | None, list[int]], Awaitable[None]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Other nodes' bookings by ``NOTIFY`` (:class:`.rules.ReservationNews`)."""
        await self._news.follow(changed, task_status=task_status)

    async def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load such as ``jobd db copy``: until
        autovacuum's ANALYZE, a fresh table's plans may scan and sort every row)."""
        await self.flush()
        try:
            async with self._pool.connection() as conn:
                await conn.execute(q.ANALYZE)
        except psycopg.Error as exc:
            raise StoreError(f"ANALYZE on {safe_url(self.url)} failed: {exc}") from exc

    def fence(self, node: str, epoch: int) -> None:
        """From now on every batch checks node ``node``'s fencing token ``epoch``."""
        self._token = (node, epoch)

    def membership(self) -> Membership | None:
        if self.node is None:
            return None
        if self._membership is None:
            self._membership = PgMembership(self.url, self._fetchall, self.node, self.fence)
        return self._membership

    def asset_locks(self, node: str) -> AssetLocks:
        return PgAssetLocks(self.url, self._fetchall, node)

    def news(self) -> PgNews:
        return PgNews(self.url, self._fetchall)

    # ----------------------------------------------------------------- reading
    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"read from {safe_url(self.url)} failed: {exc}") from exc

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _snapshot(self, fn: Callable[[psycopg.AsyncConnection[Any]], Any]) -> Any:
        """Run ``fn(conn)`` (several reads) in one REPEATABLE READ, read-only transaction."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return await fn(conn)
        except psycopg.Error as exc:
            raise StoreError(f"read from {safe_url(self.url)} failed: {exc}") from exc

    async def load_job(self, job_id: int, *, full: bool = True) -> Job | None:
        async def read(conn: psycopg.AsyncConnection[Any]) -> Job | None:
            row = await (await conn.execute(q.SELECT_JOB, (job_id,))).fetchone()
            if row is None:
                return None
            job = job_from_row(row)
            rows = await (await conn.execute(q.SELECT_STEPS, (job_id,))).fetchall()
            job.steps = [step_from_row(r) for r in rows]
            rows = await (await conn.execute(q.SELECT_RESERVATIONS, (job_id,))).fetchall()
            job.reservations = [reservation_from_row(r) for r in rows]
            if full:
                rows = await (await conn.execute(q.SELECT_HISTORY, (job_id,))).fetchall()
                job.history = [_history(r) for r in rows]
            return job

        return cast("Job | None", await self._snapshot(read))

    async def load_steps(self, job_id: int) -> list[Step]:
        return [step_from_row(r) for r in await self._fetchall(q.SELECT_STEPS, (job_id,))]

    async def load_reservations(self, job_id: int) -> list[Reservation]:
        rows = await self._fetchall(q.SELECT_RESERVATIONS, (job_id,))
        return [reservation_from_row(r) for r in rows]

    async def load_history(self, job_id: int) -> list[HistoryEntry]:
        return [_history(r) for r in await self._fetchall(q.SELECT_HISTORY, (job_id,))]

    async def job_log(self, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._fetchall(q.SELECT_LOG, (job_id, after, limit))
        return [
            {"seq": r[0], "at": r[1], "step": r[2], "level": r[3], "message": r[4]} for r in rows
        ]

    async def list_jobs(self, f: JobFilter, limit: int, cursor: int | None) -> list[Job]:
        read = partial(read_filtered, f=f, columns=q.FILTER_JOB_COLUMNS, limit=limit, cursor=cursor)
        return [job_from_row(r) for r in await self._snapshot(read)]

    async def match_ids(self, f: JobFilter, limit: int) -> list[int]:
        read = partial(read_filtered, f=f, columns="j.id", limit=limit, descending=False)
        return [r[0] for r in await self._snapshot(read)]

    async def jobs_in_states(self, states: Iterable[JobState]) -> list[Job]:
        """On a node of a cluster: the jobs in ``states`` that this node holds (recovery's)."""
        names = [str(s) for s in states]
        if self._token is not None:
            rows = await self._fetchall(q.IDS_IN_STATES_OF_NODE, (names, self._token[0]))
        else:
            rows = await self._fetchall(q.IDS_IN_STATES, (names,))
        ids = [r[0] for r in rows]
        return await self.load_jobs(ids)

    async def load_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        if not job_ids:
            return []
        ids = list(job_ids)
        return cast(list[Job], await self._snapshot(lambda conn: _read_jobs(conn, ids)))

    async def job_states(self, job_ids: Sequence[int]) -> dict[int, tuple[str, JobState]]:
        if not job_ids:
            return {}
        rows = await self._fetchall(q.SELECT_NAMES_BY_ID, (list(job_ids),))
        return {r[0]: (r[1] or f"{r[2]}-{r[0]}", JobState(r[3])) for r in rows}

    async def job_windows(
        self, job_ids: Sequence[int]
    ) -> dict[int, tuple[str, JobState, float | None, float | None]]:
        if not job_ids:
            return {}
        rows = await self._fetchall(q.SELECT_WINDOWS_BY_ID, (list(job_ids),))
        return {r[0]: (r[1] or f"{r[2]}-{r[0]}", JobState(r[3]), r[4], r[5]) for r in rows}

    async def count_state(self, state: JobState) -> int:
        row = await self._fetchone(q.COUNT_STATE, (str(state),))
        return 0 if row is None else int(row[0])

    async def max_job_id(self) -> int:
        row = await self._fetchone(q.MAX_JOB_ID)
        return 0 if row is None or row[0] is None else int(row[0])

    async def take_ids(self, n: int) -> int:
        """From the sequence ``jobd_job_ids`` (``sql/migrate-2.sql``), on a reader connection:
        the writer's batches never wait for it, nor it for them."""
        row = await self._fetchone(q.TAKE_IDS, (n,))
        if row is None:  # pragma: no cover - the function always answers
            raise StoreError("jobd_take_ids returned nothing")
        return int(row[0])

    async def jobs_with_error(self, code: str) -> list[int]:
        return [r[0] for r in await self._fetchall(q.IDS_WITH_ERROR, (code,))]

    async def load_due(self, now: float, limit: int) -> DuePlan:
        async def read(conn: psycopg.AsyncConnection[Any]) -> DuePlan:
            ids = [r[0] for r in await (await conn.execute(q.DUE_IDS, (now, limit))).fetchall()]
            cur = await conn.execute(q.UNCONFIRMED_STARTED, (now,))
            started = [r[0] for r in await cur.fetchall()]
            times = []
            for sql in (q.NEXT_DUE, q.NEXT_UNCONFIRMED):
                row = await (await conn.execute(sql, (now,))).fetchone()
                times.append(None if row is None else row[0])
            wake = [t for t in times if t is not None]
            due = await _read_jobs(conn, ids) if ids else []
            return DuePlan(due, started, min(wake) if wake else None)

        return cast(DuePlan, await self._snapshot(read))

    async def pending_jobs(self, limit: int) -> list[int]:
        return [r[0] for r in await self._fetchall(q.PENDING_IDS, (limit,))]

    async def read_reservations(
        self, load: Callable[[Iterable[ReservationRow], Iterable[tuple[int, str, float]]], None]
    ) -> None:
        by_span = await self._fetchall(q.RESERVATIONS_BY_SPAN)
        by_job = await self._fetchall(q.RESERVATIONS_BY_JOB)
        load(cast(list[ReservationRow], by_span), cast(list[tuple[int, str, float]], by_job))

    async def schedule_rows(self) -> dict[str, dict[str, Any]]:
        return {
            r[0]: {
                "last_fire_at": r[1],
                "last_job_id": r[2],
                "missed": r[3],
                "skipped": r[4],
                "paused_at": r[5],
            }
            for r in await self._fetchall(q.SCHEDULE_ROWS)
        }

    async def schedule_events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self._fetchall(q.SCHEDULE_EVENTS, (name, limit))
        return [
            {"at": r[0], "fire_time": r[1], "kind": r[2], "job_id": r[3], "reason": r[4]}
            for r in rows
        ]


def _history(r: tuple[Any, ...]) -> HistoryEntry:
    return HistoryEntry(
        r[0],
        None if r[1] is None else JobState(r[1]),
        None if r[2] is None else JobState(r[2]),
        r[3],
        r[4],
    )


async def _read_jobs(conn: psycopg.AsyncConnection[Any], ids: list[int]) -> list[Job]:
    """Jobs with steps and reservations in the order of ``ids``: three statements."""
    rows = await (await conn.execute(q.SELECT_JOBS_BY_ID, (ids,))).fetchall()
    jobs = {row[0]: job_from_row(row) for row in rows}
    for r in await (await conn.execute(q.SELECT_STEPS_BY_JOB, (ids,))).fetchall():
        jobs[r[0]].steps.append(step_from_row(r))
    for r in await (await conn.execute(q.SELECT_RESERVATIONS_BY_JOB, (ids,))).fetchall():
        jobs[r[0]].reservations.append(reservation_from_row(r))
    return [jobs[i] for i in ids if i in jobs]
