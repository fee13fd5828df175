"""SQLite persistence: the truth about every job.

Writes use **group commit** through a writer process (:mod:`jobd.sqlwriter`):
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
import json
import pickle
import sqlite3
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import anyio
import structlog

from jobd import sqlwriter
from jobd.errors import StoreError
from jobd.models import ErrorOverlay, HistoryEntry, Job, JobSpec, Reservation, Step
from jobd.states import JobState, StepState

SCHEMA_VERSION = 3
#: Units queued in one turn of the event loop that are sent without waiting for its end.
SEND_AT = 16
log = structlog.get_logger("jobd.store")

Params = Sequence[Any]
#: A reservation as ``(job_id, resource, start, end, pool)``.
ReservationRow = tuple[int, str, float, float, str | None]
T = TypeVar("T")


class GuardFailed(Exception):
    """A guarded statement matched no row: the state changed under the caller's feet."""


@dataclass(slots=True)
class Unit:
    """Statements that must be applied atomically. ``guarded`` indexes must change a row."""

    statements: list[tuple[str, Params]] = field(default_factory=list)
    guarded: set[int] = field(default_factory=set)

    def add(self, sql: str, params: Params, *, guard: bool = False) -> Unit:
        if guard:
            self.guarded.add(len(self.statements))
        self.statements.append((sql, params))
        return self


#: Built once: json.dumps with any option builds a new encoder on every call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)
_SPEC = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> str | None:
    return None if value is None else _COMPACT.encode(value)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def spec_to_json(spec: JobSpec) -> str:
    """The spec without the fields left at their defaults (``spec_from_json`` puts them
    back): a third of the JSON to build for a typical job, on the path of every submit."""
    data: dict[str, Any] = {"workflow": spec.workflow, "state": str(spec.state)}
    for key in _SPEC_NONE_DEFAULT:
        if (value := getattr(spec, key)) is not None:
            data[key] = value
    for key in _SPEC_EMPTY_DEFAULT:
        if value := getattr(spec, key):
            data[key] = list(value) if type(value) is tuple else value
    return _SPEC.encode(data)


#: JobSpec fields written only when set: those whose default is None (0.0 is a value) ...
_SPEC_NONE_DEFAULT = ("name", "start_at", "end_at", "timeout", "lock_timeout", "schedule")
#: ... and those whose default is empty or zero.
_SPEC_EMPTY_DEFAULT = (
    "params",
    "assets",
    "shared_assets",
    "resources",
    "pools",
    "preroll",
    "postroll",
    "priority",
)


def spec_from_json(text: str) -> JobSpec:
    d = json.loads(text)
    return JobSpec(
        workflow=d["workflow"],
        name=d.get("name"),
        params=d.get("params") or {},
        assets=tuple(d.get("assets") or ()),
        shared_assets=tuple(d.get("shared_assets") or ()),
        resources=tuple(d.get("resources") or ()),
        pools=tuple(d.get("pools") or ()),
        start_at=d.get("start_at"),
        end_at=d.get("end_at"),
        preroll=d.get("preroll") or 0.0,
        postroll=d.get("postroll") or 0.0,
        priority=d.get("priority") or 0,
        timeout=d.get("timeout"),
        lock_timeout=d.get("lock_timeout"),
        state=JobState(d.get("state") or "confirmed"),
        schedule=d.get("schedule"),
    )


_JOB_COLUMNS = (
    "id, state, spec, created_at, updated_at, error, progress, progress_message, due_at,"
    " run_started_at"
)


def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    err = _loads(row[5])
    return Job(
        id=row[0],
        spec=spec_from_json(row[2]),
        state=JobState(row[1]),
        created_at=row[3],
        updated_at=row[4],
        error=None if err is None else ErrorOverlay(err["code"], err["message"], err["at"]),
        progress=row[6],
        progress_message=row[7],
        due_at=row[8],
        run_started_at=row[9],
    )


_STEP_COLUMNS = (
    "job_id, idx, name, action, params, state, attempts, started_at, ended_at, outputs, "
    "error, timeout, retries, retry_backoff, isolation, pgid"
)


def _step_from_row(r: sqlite3.Row | tuple[Any, ...]) -> Step:
    return Step(
        job_id=r[0],
        idx=r[1],
        name=r[2],
        action=r[3],
        params=json.loads(r[4]),
        state=StepState(r[5]),
        attempts=r[6],
        started_at=r[7],
        ended_at=r[8],
        outputs=_loads(r[9]),
        error=r[10],
        timeout=r[11],
        retries=r[12],
        retry_backoff=r[13],
        isolation=r[14],
        pgid=r[15],
    )


_STEP_INSERT = f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def step_insert(step: Step) -> tuple[str, Params]:
    return (
        _STEP_INSERT,
        (
            step.job_id,
            step.idx,
            step.name,
            step.action,
            json.dumps(step.params),
            str(step.state),
            step.attempts,
            step.started_at,
            step.ended_at,
            dumps(step.outputs),
            step.error,
            step.timeout,
            step.retries,
            step.retry_backoff,
            step.isolation,
            step.pgid,
        ),
    )


def job_insert(job: Job) -> tuple[str, Params]:
    s = job.spec
    return (
        "INSERT INTO jobs (id, name, workflow, state, spec, priority, start_at, end_at, due_at,"
        " error, schedule, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            job.id,
            s.name,
            s.workflow,
            str(job.state),
            spec_to_json(s),
            s.priority,
            s.start_at,
            s.end_at,
            job.due_at,
            None if job.error is None else dumps(job.error.to_dict()),
            s.schedule,
            job.created_at,
            job.updated_at,
        ),
    )


HISTORY_INSERT = (
    "INSERT INTO history (job_id, at, from_state, to_state, cause, actor) VALUES (?,?,?,?,?,?)"
)
LOG_INSERT = "INSERT INTO job_log (job_id, at, step, level, message) VALUES (?,?,?,?,?)"


def schedule_pause_unit(name: str, paused_at: float | None, now: float, actor: str) -> Unit:
    """The writes of a pause (``paused_at`` a time) or resume (None), with its event row."""
    kind = "paused" if paused_at is not None else "resumed"
    return (
        Unit()
        .add("INSERT OR IGNORE INTO schedules (name) VALUES (?)", (name,))
        .add("UPDATE schedules SET paused_at = ? WHERE name = ?", (paused_at, name))
        .add(
            "INSERT INTO schedule_events (schedule, at, fire_time, kind, job_id, reason)"
            " VALUES (?,?,?,?,?,?)",
            (name, now, now, kind, None, f"{kind} by {actor}"),
        )
    )


def _read_jobs(conn: sqlite3.Connection, job_ids: list[int]) -> list[Job]:
    if not job_ids:
        return []
    marks = ",".join("?" * len(job_ids))
    jobs = {
        row[0]: _job_from_row(row)
        for row in conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN ({marks})", job_ids)
    }
    for r in conn.execute(
        f"SELECT {_STEP_COLUMNS} FROM steps WHERE job_id IN ({marks}) ORDER BY job_id, idx", job_ids
    ):
        jobs[r[0]].steps.append(_step_from_row(r))
    for r in conn.execute(
        'SELECT job_id, resource, start, "end", pool FROM reservations'
        f" WHERE job_id IN ({marks}) ORDER BY start, resource",
        job_ids,
    ):
        jobs[r[0]].reservations.append(Reservation(r[0], r[1], r[2], r[3], r[4]))
    return [jobs[i] for i in job_ids if i in jobs]


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What ``GET /v1/jobs`` and ``POST /v1/batch/{operation}`` select jobs by; every field
    set must hold (AND). Times are POSIX seconds, inclusive at both ends."""

    states: tuple[JobState, ...] = ()
    workflow: str | None = None
    #: An exclusive or shared asset of the job.
    asset: str | None = None
    #: A resource or pool the job asks for, or a resource it was ever booked on.
    resource: str | None = None
    #: On ``start_at``, else ``created_at``.
    since: float | None = None
    until: float | None = None
    #: In the name as shown, ignoring case (ASCII).
    search: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__slots__)


#: A driver whose candidates number fewer than this is read whole and sorted; above it,
#: drivers that read in id order stop at the page's end.
_SMALL = 2000
#: A filter on times alone whose index holds fewer rows than this reads the index whole.
_SORTABLE = 300_000
#: What ``?search=`` looks in (the name as shown).
_NAME = "coalesce(j.name, j.workflow || '-' || j.id)"
_TIME = "coalesce(j.start_at, j.created_at)"
_KEY_SQL = "EXISTS (SELECT 1 FROM job_keys WHERE kind = ? AND key = ? AND job_id = j.id)"


@dataclass(slots=True)
class _Arm:
    """One query of a filtered read: the rows one index holds for the driving condition
    (``own``), in id order, and the rest of the filter (``rest``) checked on each."""

    source: str
    id_column: str
    own: list[str]
    own_params: list[Any]
    ordered: bool = True  # False: the index is not in id order (its rows are sorted)
    rest: list[str] = field(default_factory=list)
    rest_params: list[Any] = field(default_factory=list)

    def sql(
        self, columns: str, descending: bool, cursor: int | None, limit: int, rest: bool = True
    ) -> tuple[str, tuple[Any, ...]]:
        where, params = [*self.own], [*self.own_params]
        if rest:
            where += self.rest
            params += self.rest_params
        if cursor is not None:
            where.append(f"{self.id_column} {'<' if descending else '>'} ?")
            params.append(cursor)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # A count (``rest`` left out) needs no order: ordering an index that is not in id
        # order would sort every row it holds before the limit.
        order = f" ORDER BY {self.id_column} {'DESC' if descending else 'ASC'}" if rest else ""
        return (
            f"SELECT {columns} FROM {self.source}{clause}{order} LIMIT ?",
            (*params, limit),
        )


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _residual(f: JobFilter, skip: str) -> tuple[list[str], list[Any]]:
    """The conditions of ``f`` other than the driver ``skip``, on the row ``j``."""
    where: list[str] = []
    params: list[Any] = []
    if f.states and skip != "state":
        where.append(f"j.state IN ({','.join('?' * len(f.states))})")
        params += [str(s) for s in f.states]
    if f.workflow is not None and skip != "workflow":
        where.append("j.workflow = ?")
        params.append(f.workflow)
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None and skip != kind:
            where.append(_KEY_SQL)
            params += [kind, value]
    if f.search is not None:  # checked on every row, even behind the trigram index
        where.append(f"{_NAME} LIKE ? ESCAPE '\\'")
        params.append(_like_pattern(f.search))
    if skip != "time":
        where, params = where + _time_conditions(f)[0], params + _time_conditions(f)[1]
    return where, params


def _time_conditions(f: JobFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        where.append(f"{_TIME} >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append(f"{_TIME} <= ?")
        params.append(f.until)
    return where, params


def _arm(
    name: str,
    f: JobFilter,
    source: str,
    id_column: str,
    own: list[str],
    own_params: list[Any],
    ordered: bool = True,
) -> _Arm:
    rest, rest_params = _residual(f, name)
    return _Arm(source, id_column, own, own_params, ordered, rest, rest_params)


def _drivers(f: JobFilter) -> dict[str, list[_Arm]]:
    """Every index that can drive a read of ``f``, as arms (one per state for ``state``)."""
    out: dict[str, list[_Arm]] = {}
    if f.search is not None and len(f.search) >= 3:  # the trigram index needs 3 characters
        phrase = '"' + f.search.replace('"', '""') + '"'
        source = "job_names CROSS JOIN jobs AS j ON j.id = job_names.rowid"
        out["search"] = [
            _arm("search", f, source, "job_names.rowid", ["job_names MATCH ?"], [phrase])
        ]
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None:
            source = "job_keys AS k CROSS JOIN jobs AS j ON j.id = k.job_id"
            own = ["k.kind = ?", "k.key = ?"]
            out[kind] = [_arm(kind, f, source, "k.job_id", own, [kind, value])]
    if f.workflow is not None:
        source = "jobs AS j INDEXED BY jobs_by_workflow"
        out["workflow"] = [_arm("workflow", f, source, "j.id", ["j.workflow = ?"], [f.workflow])]
    if f.states:
        source = "jobs AS j INDEXED BY jobs_by_state"
        out["state"] = [
            _arm("state", f, source, "j.id", ["j.state = ?"], [str(s)])
            for s in dict.fromkeys(f.states)
        ]
    if f.since is not None or f.until is not None:
        own, params = _time_conditions(f)
        source = "jobs AS j INDEXED BY jobs_by_time"
        out["time"] = [_arm("time", f, source, "j.id", own, params, ordered=False)]
    return out


def _count(
    conn: sqlite3.Connection,
    arms: list[_Arm],
    cursor: int | None,
    descending: bool,
    cap: int = _SMALL,
) -> int:
    """How many rows the arms' indexes hold for their own condition, up to ``cap``."""
    total = 0
    for arm in arms:
        sql, params = arm.sql("1", descending, cursor, cap, rest=False)
        total += conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
    return total


def plan_filter(
    conn: sqlite3.Connection, f: JobFilter, cursor: int | None, descending: bool = True
) -> list[_Arm]:
    """The arms to read ``f`` with: the index holding the fewest rows for its condition when
    one holds fewer than :data:`_SMALL` (read whole), else the first of those that read in
    id order (they stop at the end of the page), else the table in id order."""
    drivers = _drivers(f)
    counts = {name: _count(conn, arms, cursor, descending) for name, arms in drivers.items()}
    small = [name for name in counts if counts[name] < _SMALL]
    if small:
        return drivers[min(small, key=lambda name: counts[name])]
    for arms in drivers.values():
        if all(arm.ordered for arm in arms):
            return arms
    time_arm = drivers.get("time", [None])[0]
    # Only times: the index holds (time, id), so up to _SORTABLE of its entries are read
    # and the page's ids kept without touching the table; walking the table in id order
    # instead reads every newer job first (a day a fortnight ago: 900,000 rows).
    if (
        time_arm is not None
        and not time_arm.rest
        and _count(conn, [time_arm], cursor, descending, _SORTABLE) < _SORTABLE
    ):
        return [time_arm]
    where, params = _residual(f, "")
    return [_Arm("jobs AS j", "j.id", where, params)]


def read_filtered(
    conn: sqlite3.Connection,
    f: JobFilter,
    columns: str,
    limit: int,
    cursor: int | None = None,
    descending: bool = True,
) -> list[tuple[Any, ...]]:
    """Rows of ``columns`` (on ``j``, the first being ``j.id``) of the jobs matching ``f``,
    ``limit`` at most, by id (newest first when ``descending``), after ``cursor``."""
    arms = plan_filter(conn, f, cursor, descending)
    if len(arms) == 1 and not arms[0].ordered:
        # The page's ids from the index alone (it holds the time and the id), then the rows.
        sql, params = arms[0].sql("j.id", descending, cursor, limit)
        ids = [r[0] for r in conn.execute(sql, params)]
        if not ids or columns == "j.id":
            return [(i,) for i in ids]
        marks = ",".join("?" * len(ids))
        found = conn.execute(f"SELECT {columns} FROM jobs AS j WHERE j.id IN ({marks})", ids)
        return sorted(found.fetchall(), key=lambda row: row[0], reverse=descending)
    rows: list[tuple[Any, ...]] = []
    for arm in arms:
        sql, params = arm.sql(columns, descending, cursor, limit)
        rows += conn.execute(sql, params).fetchall()
    if len(arms) > 1:  # one arm per state: merge them
        rows.sort(key=lambda row: row[0], reverse=descending)
    return rows[:limit]


@dataclass(slots=True)
class DuePlan:
    """See :meth:`Store.load_due`."""

    due: list[Job]
    unconfirmed_started: list[int]
    next_wake: float | None


class _Writer:
    """The daemon's end of the writer process (:mod:`jobd.sqlwriter`): frames over its pipes."""

    def __init__(self, path: Path, proc: asyncio.subprocess.Process) -> None:
        self.path, self.proc = path, proc
        assert proc.stdin is not None and proc.stdout is not None
        self._stdin, self._stdout = proc.stdin, proc.stdout

    @classmethod
    async def start(cls, path: Path, synchronous: str) -> _Writer:
        schema = resources.files("jobd").joinpath("sql/schema.sql")
        # -I -S: the writer needs only the standard library, and starts faster without site.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            sqlwriter.__file__,
            str(path),
            synchronous,
            str(schema),
            str(SCHEMA_VERSION),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        writer = cls(path, proc)
        try:
            kind, message = await writer.receive()
        except BaseException:
            await writer.close()
            raise
        if kind != "ready":
            await writer.close()
            raise StoreError(str(message))
        return writer

    def send(self, units: list[Unit]) -> None:
        # Never waits (no drain): what is sent is bounded by the units whose callers wait,
        # and waiting for the writer to read here while it waits for us to read its answers
        # could deadlock the two.
        self._stdin.write(sqlwriter.encode_frame([(u.statements, u.guarded) for u in units]))

    async def receive(self) -> Any:
        try:
            head = await self._stdout.readexactly(sqlwriter.HEADER.size)
            (size,) = sqlwriter.HEADER.unpack(head)
            return pickle.loads(await self._stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self.proc.wait()
            raise StoreError(
                f"the database writer process for {self.path} exited (exit status {code})"
            ) from exc

    async def close(self) -> None:
        """End of input: the writer finishes and exits (killed if it has not in 30 s)."""
        if self.proc.returncode is not None:
            return
        with anyio.CancelScope(shield=True):
            self._stdin.close()
            with anyio.move_on_after(30):
                await self.proc.wait()
                return
            log.error("the database writer did not exit; killing it", pid=self.proc.pid)
            self.proc.kill()
            await self.proc.wait()


class Store:
    """The job database. Create with :func:`open_store`."""

    def __init__(self, path: Path, writer: _Writer, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: list[tuple[Unit, asyncio.Future[None] | None]] = []
        #: Batches sent to the writer, oldest first, whose answers have not come yet.
        self._inflight: deque[list[tuple[Unit, asyncio.Future[None] | None]]] = deque()
        self._flushing = asyncio.Lock()
        #: Set when a batch was sent: the writer task waits for the answers.
        self._wakeup = asyncio.Event()
        #: A send of the queue is scheduled for the end of this turn of the event loop.
        self._send_scheduled = False
        self._closed = False
        #: Why the store can take no more writes (its writer process is gone).
        self._broken: StoreError | None = None
        self.batches = 0
        self.units = 0

    # ----------------------------------------------------------------- writing
    async def commit(self, unit: Unit, *, urgent: bool = False) -> None:
        """Apply ``unit`` durably; returns after COMMIT. Raises GuardFailed or StoreError.

        ``urgent``: send it (with what queued before it) to the writer now, not when the
        batch fills or the loop's turn ends: for a write that something else waits on."""
        if self._closed or self._broken:
            raise self._broken or StoreError("the store is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(unit, fut)
        if urgent:
            self._send_queue()
        await fut

    def commit_nowait(self, unit: Unit) -> None:
        """Queue ``unit`` for the next batch without waiting (log lines, progress)."""
        if not self._closed and not self._broken:
            self._enqueue(unit, None)

    def _enqueue(self, unit: Unit, fut: asyncio.Future[None] | None) -> None:
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

    async def _writer_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Send what is queued and wake the callers of each batch as its answer comes, until
        nothing is queued or in flight. Raises StoreError if the writer died."""
        async with self._flushing:
            while self._inflight or self._queue:
                self._send_queue()
                try:
                    kind, results = await self._writer.receive()
                except StoreError as exc:
                    self._fail_all(exc)
                    raise
                self._resolve(self._inflight.popleft(), kind, results)

    def _send_queue(self) -> None:
        self._send_scheduled = False
        if not self._queue or self._broken:
            return
        batch, self._queue = self._queue, []
        self._writer.send([unit for unit, _ in batch])
        self._inflight.append(batch)
        self._wakeup.set()

    def _resolve(
        self, batch: list[tuple[Unit, asyncio.Future[None] | None]], kind: str, results: Any
    ) -> None:
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

    async def load_job(self, job_id: int, *, full: bool = True) -> Job | None:
        row = await self._fetchone(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            return None
        job = _job_from_row(row)
        job.steps = await self.load_steps(job_id)
        job.reservations = await self.load_reservations(job_id)
        if full:
            job.history = await self.load_history(job_id)
        return job

    async def load_steps(self, job_id: int) -> list[Step]:
        rows = await self._fetchall(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE job_id = ? ORDER BY idx", (job_id,)
        )
        return [_step_from_row(r) for r in rows]

    async def load_reservations(self, job_id: int) -> list[Reservation]:
        rows = await self._fetchall(
            'SELECT job_id, resource, start, "end", pool FROM reservations WHERE job_id = ?'
            " ORDER BY start, resource",
            (job_id,),
        )
        return [Reservation(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def load_history(self, job_id: int) -> list[HistoryEntry]:
        rows = await self._fetchall(
            "SELECT at, from_state, to_state, cause, actor FROM history WHERE job_id = ?"
            " ORDER BY id",
            (job_id,),
        )
        return [
            HistoryEntry(
                r[0],
                None if r[1] is None else JobState(r[1]),
                None if r[2] is None else JobState(r[2]),
                r[3],
                r[4],
            )
            for r in rows
        ]

    async def list_jobs(self, f: JobFilter, limit: int, cursor: int | None) -> list[Job]:
        """Up to ``limit`` jobs matching ``f``, newest first, with ids below ``cursor``; in
        one hop to the reader's thread (the plan's counts and the page)."""
        columns = ", ".join(f"j.{c.strip()}" for c in _JOB_COLUMNS.split(","))
        rows = await self._read(read_filtered, f, columns, limit, cursor)
        return [_job_from_row(r) for r in rows]

    async def match_ids(self, f: JobFilter, limit: int) -> list[int]:
        """The ids of up to ``limit`` jobs matching ``f``, oldest first (the batch routes)."""
        rows = await self._read(read_filtered, f, "j.id", limit, None, False)
        return [r[0] for r in rows]

    async def jobs_in_states(self, states: Iterable[JobState]) -> list[Job]:
        """Jobs (with steps) in these states, oldest due first: recovery's input."""
        names = [str(s) for s in states]
        rows = await self._fetchall(
            f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(names))})"
            " ORDER BY due_at, id",
            names,
        )
        ids = [r[0] for r in rows]
        jobs: list[Job] = []
        for start in range(0, len(ids), 500):  # SQLite caps the number of ? in one query
            jobs += await self.load_jobs(ids[start : start + 500])
        return jobs

    async def load_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Jobs with steps and reservations (no history), in the order of ``job_ids``;
        three queries whatever the number, in one hop to the reader's thread."""
        if not job_ids:
            return []
        return await self._read(_read_jobs, list(job_ids))

    async def load_due(self, now: float, limit: int) -> DuePlan:
        """What the due timer needs, in one hop to the reader's thread (it is on the path
        from a job's due time to its run): up to ``limit`` confirmed jobs due by ``now``,
        oldest first, loaded as by :meth:`load_jobs`; the draft or tentative jobs whose start
        has passed (to be marked ``not-confirmed``); and when to wake next: the next
        confirmed job due after ``now`` (those due by then are being moved) or the next
        unconfirmed start."""

        def read(conn: sqlite3.Connection) -> DuePlan:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM jobs INDEXED BY jobs_due WHERE state = 'confirmed'"
                    " AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                    (now, limit),
                )
            ]
            unconfirmed = (
                "jobs INDEXED BY jobs_unconfirmed WHERE state IN ('draft', "
                "'tentative') AND error IS NULL AND start_at IS NOT NULL"
            )
            started = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM {unconfirmed} AND start_at <= ? ORDER BY start_at", (now,)
                )
            ]
            times = [
                conn.execute(
                    "SELECT min(due_at) FROM jobs INDEXED BY jobs_due"
                    " WHERE state = 'confirmed' AND due_at > ?",
                    (now,),
                ).fetchone()[0],
                conn.execute(
                    f"SELECT min(start_at) FROM {unconfirmed} AND start_at > ?", (now,)
                ).fetchone()[0],
            ]
            wake = [t for t in times if t is not None]
            return DuePlan(_read_jobs(conn, ids), started, min(wake) if wake else None)

        return await self._read(read)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in the reader's thread: several queries, one hop."""
        execute = self._reader._execute
        result = await execute(fn, self._reader._conn, *args)  # type: ignore[no-untyped-call]
        return cast(T, result)

    async def jobs_with_error(self, code: str) -> list[int]:
        rows = await self._fetchall(
            "SELECT id FROM jobs WHERE error IS NOT NULL AND json_extract(error, '$.code') = ?",
            (code,),
        )
        return [r[0] for r in rows]

    async def pending_jobs(self, limit: int) -> list[int]:
        rows = await self._fetchall(
            "SELECT id FROM jobs INDEXED BY jobs_pending WHERE state = 'pending'"
            " ORDER BY priority DESC, due_at, id"
            " LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    async def count_state(self, state: JobState) -> int:
        row = await self._fetchone("SELECT count(*) FROM jobs WHERE state = ?", (str(state),))
        return 0 if row is None else int(row[0])

    async def max_job_id(self) -> int:
        row = await self._fetchone(
            "SELECT max(m) FROM (SELECT max(id) AS m FROM jobs UNION ALL"
            " SELECT max(job_id) FROM history)"
        )
        return 0 if row is None or row[0] is None else int(row[0])

    async def read_reservations(
        self, load: Callable[[Iterable[ReservationRow], Iterable[tuple[int, str, float]]], None]
    ) -> None:
        """Call ``load(by_resource, by_job)`` in the reader's thread with every reservation
        streamed twice, from the two indexes: as ``(job_id, resource, start, end, pool)``
        ordered by resource and start, and as ``(job_id, resource, start)`` ordered by job:
        ``BookingIndex.load_sorted``, without all the rows in memory at once."""

        def read(conn: sqlite3.Connection) -> None:
            load(
                conn.execute(
                    'SELECT job_id, resource, start, "end", pool FROM reservations'
                    " INDEXED BY reservations_by_span ORDER BY resource, start"
                ),
                conn.execute(
                    "SELECT job_id, resource, start FROM reservations"
                    " INDEXED BY reservations_by_job ORDER BY job_id"
                ),
            )

        await self._read(read)

    async def job_states(self, job_ids: Sequence[int]) -> dict[int, tuple[str, JobState]]:
        if not job_ids:
            return {}
        rows = await self._fetchall(
            f"SELECT id, name, workflow, state FROM jobs WHERE id IN"
            f" ({','.join('?' * len(job_ids))})",
            list(job_ids),
        )
        return {r[0]: (r[1] or f"{r[2]}-{r[0]}", JobState(r[3])) for r in rows}

    async def job_windows(
        self, job_ids: Sequence[int]
    ) -> dict[int, tuple[str, JobState, float | None, float | None]]:
        """Per job: name, state, ``start_at`` and ``end_at`` (what a booking's bar shows)."""
        out: dict[int, tuple[str, JobState, float | None, float | None]] = {}
        ids = list(job_ids)
        for lo in range(0, len(ids), 30000):  # under SQLite's 32,766 bound parameters
            chunk = ids[lo : lo + 30000]
            rows = await self._fetchall(
                "SELECT id, name, workflow, state, start_at, end_at FROM jobs WHERE id IN"
                f" ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                out[r[0]] = (r[1] or f"{r[2]}-{r[0]}", JobState(r[3]), r[4], r[5])
        return out

    async def job_log(self, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._fetchall(
            "SELECT seq, at, step, level, message FROM job_log WHERE job_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        )
        return [
            {"seq": r[0], "at": r[1], "step": r[2], "level": r[3], "message": r[4]} for r in rows
        ]

    async def schedule_rows(self) -> dict[str, dict[str, Any]]:
        rows = await self._fetchall(
            "SELECT name, last_fire_at, last_job_id, missed, skipped, paused_at FROM schedules"
        )
        return {
            r[0]: {
                "last_fire_at": r[1],
                "last_job_id": r[2],
                "missed": r[3],
                "skipped": r[4],
                "paused_at": r[5],
            }
            for r in rows
        }

    async def schedule_events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self._fetchall(
            "SELECT at, fire_time, kind, job_id, reason FROM schedule_events WHERE schedule = ?"
            " ORDER BY id DESC LIMIT ?",
            (name, limit),
        )
        return [
            {"at": r[0], "fire_time": r[1], "kind": r[2], "job_id": r[3], "reason": r[4]}
            for r in rows
        ]


async def _connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=30)
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    await conn.execute("PRAGMA foreign_keys = OFF")
    await conn.execute("PRAGMA busy_timeout = 30000")
    return conn


@asynccontextmanager
async def open_store(path: Path, *, synchronous: str = "full") -> AsyncIterator[Store]:
    """Open (creating and migrating as needed) the database at ``path``; run its writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = await _Writer.start(path, synchronous)
    try:
        try:
            reader = await _connect(path, synchronous)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        store = Store(path, writer, reader)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(store._writer_loop)
                try:
                    yield store
                finally:
                    with anyio.CancelScope(shield=True):
                        if store._broken is None:
                            await store._flush()
                    store._closed = True
                    tg.cancel_scope.cancel()
        finally:
            await reader.close()
    finally:
        await writer.close()
