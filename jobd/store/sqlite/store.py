"""SQLite persistence: the truth about every job.

Writes use **group commit** through a writer process (:mod:`jobd.store.sqlite.sqlwriter`):
callers hand in :class:`Unit`\\ s (statements that must land together); the
store sends them to the writer in batches, as a batch fills (``SEND_AT``
units), at once for an ``urgent`` unit, or at the end of the event loop's
turn; the writer applies every batch that arrived while it was busy in ONE
transaction, commits, and answers; only then are the callers woken. Throughput
follows the number of units in flight; latency stays at about one commit. A
guarded statement (``UPDATE ... WHERE state = ?``) that changes no row rolls
back its own unit and raises :class:`GuardFailed` to its caller, without
touching the rest of the batch.

Reads use a connection of this process (aiosqlite; WAL lets it read while the
writer writes), so the API never waits behind a batch and never sees an
uncommitted change.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import anyio
import structlog

from jobd.core.errors import StoreError
from jobd.core.models import HistoryEntry, Job, Reservation, Step
from jobd.core.states import JobState
from jobd.store.contract import Changes, GuardFailed, ReservationRow, Store
from jobd.store.reads import DuePlan, JobFilter
from jobd.store.soon import Completion, Done, queue_soon
from jobd.store.sqlite import queries as q
from jobd.store.sqlite import sqlwriter
from jobd.store.sqlite.filters import read_filtered
from jobd.store.sqlite.rows import (
    history_from_row,
    job_from_row,
    read_job,
    read_jobs,
    reservation_from_row,
    step_from_row,
)
from jobd.store.sqlite.units import Params, Unit
from jobd.store.sqlite.writerpipe import Writer

SCHEMA_VERSION = 6
#: Units queued in one turn of the event loop that are sent without waiting for its end.
SEND_AT = 16
log = structlog.get_logger("jobd.store")
T = TypeVar("T")
_Queued = tuple[Unit, "asyncio.Future[Any] | Completion | None"]


class SqliteStore(Store):
    """The job database on SQLite. Create with :func:`open_store`; the contract's docstrings
    (:class:`jobd.store.contract.Store`) say what each method promises."""

    def __init__(self, path: Path, writer: Writer, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: list[_Queued] = []
        #: Batches sent to the writer, oldest first, whose answers have not come yet.
        self._inflight: deque[list[_Queued]] = deque()
        #: A send of the queue is scheduled for the end of this turn of the event loop.
        self._send_scheduled = False
        self._closed = False
        #: Why the store can take no more writes (its writer process is gone).
        self._broken: StoreError | None = None
        self.batches = 0
        self.units = 0

    # ----------------------------------------------------------------- writing
    #: A new unit of work: the class itself, so that making one costs no extra call.
    changes = Unit

    async def commit(self, changes: Changes, *, urgent: bool = False) -> None:
        """Apply ``unit`` durably; returns after COMMIT. Raises GuardFailed or StoreError.

        ``urgent``: send it (with what queued before it) to the writer now, not when the
        batch fills or the loop's turn ends: for a write that something else waits on."""
        await self._submit(cast(Unit, changes), urgent)

    def _submit(self, unit: Unit, urgent: bool) -> asyncio.Future[Any]:
        """Queue ``unit``; its future answers None, or the rows its last statement returned."""
        if self._closed or self._broken:
            raise self._broken or StoreError("the store is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(unit, fut)
        if urgent:
            self._send_queue()
        return fut

    def commit_soon(self, changes: Changes, done: Done) -> None:
        closed = StoreError("the store is closed") if self._closed else None
        queue_soon(self._enqueue, changes, done, self._broken or closed)

    def commit_nowait(self, changes: Changes) -> None:
        """Queue ``changes`` for the next batch without waiting (log lines, progress)."""
        if not self._closed and not self._broken:
            self._enqueue(cast(Unit, changes), None)

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
        """One unit of set-based statements, whatever the number of ids (one transaction:
        on a StoreError nothing moved); sent at once, its own batch's start."""
        if not job_ids:
            return []
        ids, frm, to = f"[{','.join(str(int(i)) for i in job_ids)}]", str(from_state), str(to_state)
        unit = Unit().add(q.HISTORY_MANY, (at, frm, to, cause, actor, ids, frm))
        unit.ordered = True  # its history after the rows appended by earlier units
        if release:
            unit.add(q.RELEASE_MANY, (ids, frm))
        rows = await self._submit(unit.add(q.TRANSITION_MANY, (to, at, ids, frm)), True)
        return [row[0] for row in rows or ()]

    def _enqueue(self, unit: Unit, fut: asyncio.Future[Any] | Completion | None) -> None:
        self._queue.append((unit, fut))
        if len(self._queue) >= SEND_AT:
            # Mid-way through a burst of commits (one turn of the event loop may make
            # hundreds): the writer starts on these while the loop makes the rest.
            self._send_queue()
        elif not self._send_scheduled:
            # The rest at the end of this turn: callbacks added now run after every one
            # that is ready already. Not after the batch in flight: the writer takes
            # whatever arrived meanwhile into its next transaction.
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_queue)

    def _send_queue(self) -> None:
        self._send_scheduled = False
        if not self._queue or self._broken:
            return
        batch, self._queue = self._queue, []
        self._writer.send([unit for unit, _ in batch])
        self._inflight.append(batch)

    def _answered(self, frame: Any) -> None:
        """The writer's answer to the oldest batch in flight (in the loop's read callback)."""
        kind, results = frame
        self._resolve(self._inflight.popleft(), kind, results)

    async def _watch_writer(self) -> None:
        """Idle until the writer process ends; then the store's task group ends with the
        writer's error (the daemon exits on it), unless the store was being closed."""
        await self._writer.wait_gone()
        if self._broken is not None:
            raise self._broken

    def _writer_gone(self, code: int | None) -> None:
        """The writer process has exited: after :meth:`close`, as it should; otherwise
        every write waiting and every later one fails."""
        if not self._closed or self._inflight or self._queue:
            self._fail_all(StoreError(self._writer.exited(code)))

    def _resolve(self, batch: list[_Queued], kind: str, results: Any) -> None:
        if kind != "ok":
            log.error("batch write failed", error=str(results), units=len(batch))
            results = [("error", f"write failed: {results}")] * len(batch)
        self.batches += 1
        self.units += len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            if fut is None or fut.done():
                continue
            if result is None:
                fut.set_result(None)
            elif result[0] == "rows":
                fut.set_result(result[1])
            elif result[0] == "guard":
                fut.set_exception(GuardFailed(result[1]))
            else:
                fut.set_exception(StoreError(result[1]))

    def _fail_all(self, exc: StoreError) -> None:
        self._broken = exc
        log.error("the store can take no more writes", error=str(exc))
        batch = [item for sent in self._inflight for item in sent] + self._queue
        self._inflight.clear()
        self._queue = []
        for _, fut in batch:
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self.commit(Unit())

    # ----------------------------------------------------------------- reading
    async def _fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        rows = await self._reader.execute_fetchall(sql, params)
        return list(rows)

    async def _fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in the reader's thread: several queries, one hop."""
        execute = self._reader._execute
        result = await execute(fn, self._reader._conn, *args)  # type: ignore[no-untyped-call]
        return cast(T, result)

    async def load_job(self, job_id: int, *, full: bool = True) -> Job | None:
        """In one hop to the reader's thread, in one read transaction (a snapshot): four
        hops cost ``GET /v1/jobs/{id}`` more than its queries did."""
        return await self._read(read_job, job_id, full)

    async def load_steps(self, job_id: int) -> list[Step]:
        return [step_from_row(r) for r in await self._fetchall(q.SELECT_STEPS, (job_id,))]

    async def load_reservations(self, job_id: int) -> list[Reservation]:
        rows = await self._fetchall(q.SELECT_RESERVATIONS, (job_id,))
        return [reservation_from_row(r) for r in rows]

    async def load_history(self, job_id: int) -> list[HistoryEntry]:
        return [history_from_row(r) for r in await self._fetchall(q.SELECT_HISTORY, (job_id,))]

    async def job_log(self, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._fetchall(q.SELECT_LOG, (job_id, after, limit))
        return [
            {"seq": r[0], "at": r[1], "step": r[2], "level": r[3], "message": r[4]} for r in rows
        ]

    async def list_jobs(self, f: JobFilter, limit: int, cursor: int | None) -> list[Job]:
        """In one hop to the reader's thread (the plan's counts and the page)."""
        rows = await self._read(read_filtered, f, q.FILTER_JOB_COLUMNS, limit, cursor)
        return [job_from_row(r) for r in rows]

    async def match_ids(self, f: JobFilter, limit: int) -> list[int]:
        rows = await self._read(read_filtered, f, "j.id", limit, None, False)
        return [r[0] for r in rows]

    async def jobs_in_states(self, states: Iterable[JobState]) -> list[Job]:
        names = [str(s) for s in states]
        ids = [r[0] for r in await self._fetchall(q.ids_in_states(len(names)), names)]
        return await self.load_jobs(ids)

    async def load_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Three queries per :data:`~queries.MAX_IDS` ids, in one hop to the reader's thread."""
        if not job_ids:
            return []
        return await self._read(read_jobs, list(job_ids))

    async def job_states(self, job_ids: Sequence[int]) -> dict[int, tuple[str, JobState]]:
        if not job_ids:
            return {}
        out: dict[int, tuple[str, JobState]] = {}
        ids = list(job_ids)
        for start in range(0, len(ids), q.MAX_IDS):
            chunk = ids[start : start + q.MAX_IDS]
            for r in await self._fetchall(q.select_names_by_id(len(chunk)), chunk):
                out[r[0]] = (r[1] or f"{r[2]}-{r[0]}", JobState(r[3]))
        return out

    async def job_windows(
        self, job_ids: Sequence[int]
    ) -> dict[int, tuple[str, JobState, float | None, float | None]]:
        out: dict[int, tuple[str, JobState, float | None, float | None]] = {}
        ids = list(job_ids)
        for lo in range(0, len(ids), q.MAX_WIDE_IDS):
            chunk = ids[lo : lo + q.MAX_WIDE_IDS]
            for r in await self._fetchall(q.select_windows_by_id(len(chunk)), chunk):
                out[r[0]] = (r[1] or f"{r[2]}-{r[0]}", JobState(r[3]), r[4], r[5])
        return out

    async def count_state(self, state: JobState) -> int:
        row = await self._fetchone(q.COUNT_STATE, (str(state),))
        return 0 if row is None else int(row[0])

    async def max_job_id(self) -> int:
        row = await self._fetchone(q.MAX_JOB_ID)
        return 0 if row is None or row[0] is None else int(row[0])

    async def jobs_with_error(self, code: str) -> list[int]:
        return [r[0] for r in await self._fetchall(q.IDS_WITH_ERROR, (code,))]

    async def load_due(self, now: float, limit: int) -> DuePlan:
        """In one hop to the reader's thread: it is on the path from a job's due time to
        its run."""

        def read(conn: sqlite3.Connection) -> DuePlan:
            ids = [r[0] for r in conn.execute(q.DUE_IDS, (now, limit))]
            started = [r[0] for r in conn.execute(q.UNCONFIRMED_STARTED, (now,))]
            times = [
                conn.execute(q.NEXT_DUE, (now,)).fetchone()[0],
                conn.execute(q.NEXT_UNCONFIRMED, (now,)).fetchone()[0],
            ]
            wake = [t for t in times if t is not None]
            return DuePlan(read_jobs(conn, ids), started, min(wake) if wake else None)

        return await self._read(read)

    async def pending_jobs(self, limit: int) -> list[int]:
        return [r[0] for r in await self._fetchall(q.PENDING_IDS, (limit,))]

    async def read_reservations(
        self, load: Callable[[Iterable[ReservationRow], Iterable[tuple[int, str, float]]], None]
    ) -> None:
        """In the reader's thread, from the two indexes, without all the rows in memory."""

        def read(conn: sqlite3.Connection) -> None:
            load(conn.execute(q.RESERVATIONS_BY_SPAN), conn.execute(q.RESERVATIONS_BY_JOB))

        await self._read(read)

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


async def _connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=30)
    for pragma in q.PRAGMAS:
        await conn.execute(pragma.format(synchronous=synchronous.upper()))
    return conn


@asynccontextmanager
async def open_store(
    path: Path,
    *,
    synchronous: str = "full",
    index_at: int = sqlwriter.INDEX_AT,
    index_idle: float = sqlwriter.INDEX_IDLE,
) -> AsyncIterator[SqliteStore]:
    """Open (creating and migrating as needed) the database at ``path``; run its writer,
    which indexes new jobs' names once ``index_at`` wait or after ``index_idle`` seconds
    idle (the search finds them meanwhile: ``filters.py``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = await Writer.start(
        path, synchronous, SCHEMA_VERSION, index_at=index_at, index_idle=index_idle
    )
    try:
        try:
            reader = await _connect(path, synchronous)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        store = SqliteStore(path, writer, reader)
        writer.attach(store._answered, store._writer_gone)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store._watch_writer)
                try:
                    yield store
                finally:
                    with anyio.CancelScope(shield=True):
                        if store._broken is None and (store._queue or store._inflight):
                            await store.flush()  # what was queued lands before the writer
                    store._closed = True
                    tg.cancel_scope.cancel()
        finally:
            store._closed = True
            await reader.close()
    finally:
        await writer.close()
