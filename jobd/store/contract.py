"""The store contract: what the engine may ask of a job database, and what it is promised.

Every backend (:mod:`jobd.store.sqlite` today, PostgreSQL next) implements the two
abstract classes below and passes the contract test suite
(``tests/test_store_contract.py``, parametrised over every backend). Nothing
above this module builds a statement: the engine and the plan speak in
*intents* (store a job, apply a transition, record a step, reserve, release,
load what is due, ...) and each backend keeps its own statements, named, in one
place (``jobd/store/sqlite/queries.py``).

**Writes** are collected in a :class:`Changes` (one *unit of work*) and handed
to :meth:`Store.commit`; a unit is applied **atomically**: all of it lands in
one durable transaction, or none of it does. A backend may (and the SQLite one
does) apply many callers' units in one transaction (group commit): a failed
guard never undoes another unit, but a unit the database refuses (an error, not
a guard) may fail the others of its transaction with
:class:`~jobd.core.errors.StoreError` too; no unit is ever applied in part. The
intents of a unit are applied in the order they were added, except the guard of
:meth:`Changes.transition` and :meth:`Changes.delete_job`, which is checked
before anything else of its unit. One write is set-based instead:
:meth:`Store.transition_many`, many jobs moved the same way at once, each guarded and
atomic on its own (a batch operation's cancel of 10,000 queued jobs).

**Reads** see only committed data, never a unit still in flight; a read that
follows a returned :meth:`Store.commit` sees that commit.

**Errors**: :class:`GuardFailed` when a guarded intent found the job no longer in
the state it was written for (the unit is not applied); a backend that enforces
bookings itself raises :class:`~jobd.core.errors.BookingConflict` from a commit whose
reservation it refused;
:class:`jobd.core.errors.StoreError` when the database cannot take the unit (disk
full, the writer gone, the store closed). Nothing else escapes a method.

Times are POSIX seconds (``float``, UTC); job ids are positive integers chosen
by the engine: counted on from :meth:`Store.max_job_id` by the one node of a
SQLite store, taken in blocks from :meth:`Store.take_ids` (:mod:`.shared`) by a cluster's nodes.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from jobd.core.models import ErrorOverlay, HistoryEntry, Job, JobSpec, Reservation, Step
from jobd.core.states import JobState

# The asset locks' contract is a module of its own; named here too, where it was first.
from jobd.store.assetlocks import AssetLocks as AssetLocks
from jobd.store.assetlocks import LockEvent as LockEvent
from jobd.store.assetlocks import LockStart as LockStart
from jobd.store.reads import DuePlan, JobFilter
from jobd.store.shared import SharedDatabase

if TYPE_CHECKING:
    from jobd.store.cluster import Membership

#: A reservation as ``(job_id, resource, start, end, pool)``.
ReservationRow = tuple[int, str, float, float, str | None]


class _Keep:
    """The type of :data:`KEEP`."""

    def __repr__(self) -> str:
        return "KEEP"


#: "Leave this field as it is" for :meth:`Changes.transition` (``None`` means clear it).
KEEP: Final[Any] = _Keep()


class GuardFailed(Exception):
    """A guarded intent matched no row: the job changed (or went) under the caller's feet.

    Raised by :meth:`Store.commit` for the unit that carried the guard; nothing of that
    unit was applied, and the other units of the same batch are not affected."""


class Changes(ABC):
    """One unit of work: intents that land together or not at all.

    Made by :meth:`Store.changes`; every intent returns the unit itself, so they chain.
    Building a unit touches nothing: only :meth:`Store.commit` (or
    :meth:`Store.commit_nowait`) applies it. A unit is committed once."""

    __slots__ = ()

    # ---------------------------------------------------------------- jobs
    @abstractmethod
    def insert_job(self, job: Job) -> Changes:
        """Store a new job: its spec, state, due time, error overlay and times.

        Steps, reservations and history are intents of their own (:meth:`insert_step`,
        :meth:`reserve`, :meth:`record_history`). The id must be new; reusing the id of a
        job that exists fails the commit with :class:`~jobd.core.errors.StoreError`."""

    @abstractmethod
    def transition(
        self,
        job_id: int,
        from_state: JobState,
        to_state: JobState,
        at: float,
        cause: str,
        actor: str,
        *,
        error: ErrorOverlay | None = KEEP,
        due_at: float | None = KEEP,
    ) -> Changes:
        """Move a job from ``from_state`` to ``to_state``, set its ``updated_at`` and append
        the history entry ``(at, from_state, to_state, cause, actor)``.

        **Guarded**: if the job is not in ``from_state`` when the unit is applied (another
        operation got there first, or it was deleted), the whole unit fails with
        :class:`GuardFailed`. ``error`` sets (an overlay) or clears (``None``) the error
        overlay, ``due_at`` the queue position; both are left alone when :data:`KEEP`.
        The caller checks the transition table; the store only guards the from-state.
        A unit carries at most one guarded intent."""

    @abstractmethod
    def record_history(
        self,
        job_id: int,
        at: float,
        from_state: JobState | None,
        to_state: JobState | None,
        cause: str,
        actor: str,
    ) -> Changes:
        """Append one entry to the job's history (``None``: before it existed, after it was
        deleted) without a transition (:meth:`transition` writes its own). History outlives
        the job: :meth:`delete_job` keeps it."""

    @abstractmethod
    def redefine_job(
        self, job_id: int, spec: JobSpec, due_at: float, steps: Sequence[Step]
    ) -> Changes:
        """An edit: replace the job's spec (and what is derived from it: name, priority,
        start and end, ``due_at``) and its steps by ``steps``, and clear its error
        overlay. Its reservations are not touched (:meth:`release`, :meth:`reserve`)."""

    @abstractmethod
    def delete_job(self, job_id: int, state: JobState) -> Changes:
        """Remove the job with its steps, reservations and log lines (history stays).

        **Guarded** like :meth:`transition`: fails with :class:`GuardFailed` unless the job
        is in ``state``."""

    @abstractmethod
    def set_error(
        self, job_id: int, error: ErrorOverlay | None, at: float, *, only_if_clear: bool = False
    ) -> Changes:
        """Set (or with ``None`` clear) the job's error overlay without changing its state;
        ``updated_at`` becomes ``at``. ``only_if_clear``: leave a job that already carries
        an overlay as it is (not an error: no row matched is fine here)."""

    @abstractmethod
    def set_run_started(self, job_id: int, at: float | None) -> Changes:
        """Record that the job's current run ran its start script at ``at`` (``None``: a new
        run begins, whose start script is still to run); read back as ``Job.run_started_at``."""

    @abstractmethod
    def set_progress(self, job_id: int, progress: float, message: str | None) -> Changes:
        """Record a running job's progress (percent) and message."""

    # ---------------------------------------------------------------- steps
    @abstractmethod
    def insert_step(self, step: Step) -> Changes:
        """Store a new step of a job (``step.job_id``, ``step.idx`` are its key)."""

    @abstractmethod
    def record_step(self, step: Step) -> Changes:
        """Record a step's progress: state, attempts, start and end, outputs, error and
        process group, as they are on ``step`` now."""

    @abstractmethod
    def set_step_pgid(self, job_id: int, idx: int, pgid: int | None) -> Changes:
        """Record the process group a step's subprocess runs in (recovery kills it)."""

    @abstractmethod
    def reset_step(self, job_id: int, idx: int) -> Changes:
        """Make a step as new for a rerun: queued, no attempts, times, outputs, error or
        process group."""

    @abstractmethod
    def interrupt_step(
        self, job_id: int, idx: int, error: str, *, retry: bool, at: float
    ) -> Changes:
        """A step that a daemon restart interrupted: queued again with ``error`` noted when
        it has attempts left (``retry``), else failed, ended at ``at``. Its process group
        is forgotten either way."""

    # ---------------------------------------------------------------- bookings
    @abstractmethod
    def reserve(self, reservation: Reservation) -> Changes:
        """Hold one span of one resource for a job. The engine's booking index decides that
        it fits; a backend that also enforces it across nodes (PostgreSQL: an exclusion
        constraint over slots, see :meth:`Store.set_capacities`) fails the commit with
        :class:`~jobd.core.errors.BookingConflict` naming the resource when it does not."""

    @abstractmethod
    def release(self, job_id: int) -> Changes:
        """Drop every reservation the job holds (none is fine)."""

    # ---------------------------------------------------------------- logs, schedules
    @abstractmethod
    def append_log(
        self, job_id: int, at: float, step: str | None, level: str, message: str
    ) -> Changes:
        """Append one line to the job's log; lines get increasing sequence numbers."""

    @abstractmethod
    def record_firing(
        self,
        schedule: str,
        fire_time: float,
        kind: str | None,
        *,
        job_id: int | None = None,
        reason: str | None = None,
        at: float = 0.0,
    ) -> Changes:
        """Remember one firing of a schedule (creating the schedule's row when new).

        ``kind``: ``"fired"`` (it submitted ``job_id``: the schedule's last firing and job
        become these), ``"skipped"`` or ``"missed"`` (counted, and the last firing moves to
        ``fire_time`` if later), or ``None``: only move the schedule's clock to
        ``fire_time`` (nothing before it is missed). Every kind but ``None`` also appends
        an event ``(at, fire_time, kind, job_id, reason)`` to the schedule's record.

        A backend shared by several nodes (PostgreSQL) records each firing ``(schedule,
        fire_time)`` of a kind once: a unit that records one again fails with
        :class:`GuardFailed`, nothing of it applied (a fired firing's job neither). A store of
        one node need not check: its one node fires each firing once."""

    @abstractmethod
    def set_schedule_paused(
        self, schedule: str, paused_at: float | None, at: float, actor: str
    ) -> Changes:
        """Pause (``paused_at`` a time) or resume (``None``) a schedule, creating its row when
        new, and append the event ``paused``/``resumed`` (reason ``"<kind> by <actor>"``)
        at ``at``; read back as ``paused_at`` of :meth:`Store.schedule_rows`."""


class Store(SharedDatabase, ABC):
    """A job database: the truth about every job. The engine is its only writer.

    Obtained from a backend's ``open_store`` (an async context manager that closes it).
    Methods are called from the event loop; none blocks it."""

    # ---------------------------------------------------------------- writing
    @abstractmethod
    def changes(self) -> Changes:
        """A new, empty unit of work for this store."""

    @abstractmethod
    async def commit(self, changes: Changes, *, urgent: bool = False) -> None:
        """Apply ``changes`` atomically and durably; return once they are committed.

        ``urgent``: something else waits on this write (a handed-on lock's ``running``):
        start it now rather than when a batch fills. Units committed by one task land in
        the order of their calls; so do units queued in one turn of the event loop.

        Raises :class:`GuardFailed` (nothing applied) or :class:`~jobd.core.errors.StoreError`
        (nothing applied; after the store broke, every later call raises it at once).
        Cancelling the caller does not withdraw a unit already handed on."""

    @abstractmethod
    def commit_soon(self, changes: Changes, done: Callable[[BaseException | None], None]) -> None:
        """:meth:`commit` with no task waiting in it (a job's outcome, the engine's hottest
        write): ``done(None)`` once committed, ``done(exc)`` with what :meth:`commit` would
        raise; called once, on the event loop, never before this returns; ordered with the
        other units as :meth:`commit`'s are. ``done`` must not raise (it is logged)."""

    @abstractmethod
    def commit_nowait(self, changes: Changes) -> None:
        """Queue ``changes`` for the next commit and return at once, without an answer
        (log lines, progress, history-only notes). Dropped silently when the store is
        closed or broken; ordered with the other units as :meth:`commit`'s are."""

    @abstractmethod
    async def flush(self) -> None:
        """Wait until everything queued so far (also by :meth:`commit_nowait`) is committed
        and its callers answered: units are answered in the order they were queued, so when
        this returns every earlier :meth:`commit_soon` callback has run (the engine relies on
        it to see the slots an end has freed)."""

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
        """Move each job of ``job_ids`` that is in ``from_state`` to ``to_state`` as a unit of
        its own :meth:`Changes.transition` would (``updated_at`` = ``at``, the history entry
        ``(at, from_state, to_state, cause, actor)``, overlay and due time kept), and with
        ``release`` drop its reservations (:meth:`Changes.release`). Returns the ids moved,
        each once, in no particular order, once they are durable.

        **Guarded per job**: a job not in ``from_state`` when it is applied (another write
        came first, or it is gone) is left as it is and out of the answer; it never fails
        the others (no :class:`GuardFailed`). **Atomic per job**: a job's state, history
        entry and release land together or not at all; the jobs may land in one transaction
        (SQLite: one set-based statement per intent, any number of ids; PostgreSQL: one
        statement for the set) or in several (this default: a unit per job, committed
        concurrently so that they share batches). Raises
        :class:`~jobd.core.errors.StoreError` as :meth:`commit` does; a backend that uses
        several transactions may have applied some jobs by then (SQLite, PostgreSQL: none)."""
        ids = list(dict.fromkeys(job_ids))

        async def one(job_id: int) -> bool:
            unit = self.changes().transition(job_id, from_state, to_state, at, cause, actor)
            await self.commit(unit.release(job_id) if release else unit)
            return True

        results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, GuardFailed):
                raise result
        return [i for i, moved in zip(ids, results, strict=True) if moved is True]

    # ---------------------------------------------------------------- one job
    @abstractmethod
    async def load_job(self, job_id: int, *, full: bool = True) -> Job | None:
        """The job with its steps and reservations, and its history when ``full``; ``None``
        when there is no such job."""

    @abstractmethod
    async def load_steps(self, job_id: int) -> list[Step]:
        """The job's steps in order (empty for an unknown job)."""

    @abstractmethod
    async def load_reservations(self, job_id: int) -> list[Reservation]:
        """The job's reservations by start, then resource."""

    @abstractmethod
    async def load_history(self, job_id: int) -> list[HistoryEntry]:
        """Every history entry of the job id, oldest first (also after it was deleted)."""

    @abstractmethod
    async def job_log(self, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` log lines with ``seq > after``, in order: each
        ``{seq, at, step, level, message}``."""

    # ---------------------------------------------------------------- many jobs
    @abstractmethod
    async def load_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Jobs with steps and reservations (no history) in the order of ``job_ids``;
        unknown ids are left out. Any number of ids (a backend splits them as it must)."""

    @abstractmethod
    async def list_jobs(self, f: JobFilter, limit: int, cursor: int | None) -> list[Job]:
        """Up to ``limit`` jobs matching ``f``, newest (highest id) first, with ids below
        ``cursor`` if given; without steps, reservations or history."""

    @abstractmethod
    async def match_ids(self, f: JobFilter, limit: int) -> list[int]:
        """The ids of up to ``limit`` jobs matching ``f``, oldest first (the batch routes)."""

    @abstractmethod
    async def jobs_in_states(self, states: Iterable[JobState]) -> list[Job]:
        """Every job in ``states`` with steps and reservations, by due time then id:
        recovery's input."""

    @abstractmethod
    async def job_states(self, job_ids: Sequence[int]) -> dict[int, tuple[str, JobState]]:
        """``{id: (name, state)}`` for the ids that exist (the name as :attr:`Job.name`)."""

    @abstractmethod
    async def job_windows(
        self, job_ids: Sequence[int]
    ) -> dict[int, tuple[str, JobState, float | None, float | None]]:
        """``{id: (name, state, start_at, end_at)}`` for the ids that exist (what a booking's
        bar shows). Any number of ids."""

    @abstractmethod
    async def count_state(self, state: JobState) -> int:
        """How many jobs are in ``state``."""

    @abstractmethod
    async def max_job_id(self) -> int:
        """The highest job id ever used, also by a deleted job (0 for a new store)."""

    @abstractmethod
    async def jobs_with_error(self, code: str) -> list[int]:
        """Ids of the jobs whose error overlay has ``code``."""

    # ---------------------------------------------------------------- the due timer
    @abstractmethod
    async def load_due(self, now: float, limit: int) -> DuePlan:
        """What the due timer needs, as one consistent read: up to ``limit`` confirmed jobs
        with ``due_at <= now`` (oldest first, loaded as by :meth:`load_jobs`); the draft
        or tentative jobs with no overlay whose ``start_at <= now``; and the next wake:
        the earliest confirmed ``due_at`` or such ``start_at`` after ``now``."""

    @abstractmethod
    async def pending_jobs(self, limit: int) -> list[int]:
        """Up to ``limit`` ids of pending jobs in admission order: priority (higher first),
        then due time, then id."""

    @abstractmethod
    async def read_reservations(
        self, load: Callable[[Iterable[ReservationRow], Iterable[tuple[int, str, float]]], None]
    ) -> None:
        """Call ``load(by_resource, by_job)`` once with every reservation streamed twice: as
        :data:`ReservationRow` ordered by resource then start, and as ``(job_id, resource,
        start)`` ordered by job. ``load`` may run in another thread and must consume both
        iterables before it returns (``BookingIndex.load_sorted``)."""

    # ---------------------------------------------------------------- schedules
    @abstractmethod
    async def schedule_rows(self) -> dict[str, dict[str, Any]]:
        """Per known schedule: ``{last_fire_at, last_job_id, missed, skipped, paused_at}``."""

    @abstractmethod
    async def schedule_events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The schedule's latest ``limit`` events, newest first: each
        ``{at, fire_time, kind, job_id, reason}``."""

    # ---------------------------------------------------------------- cluster
    def membership(self) -> Membership | None:
        """This node's membership of the cluster sharing this database; ``None`` (the
        default: SQLite) for a store of one node."""
        return None

    def asset_locks(self, node: str) -> AssetLocks | None:
        """The asset locks this database keeps for the nodes of a cluster, as node ``node``
        uses them; ``None`` (the default: SQLite) when the engine keeps them in memory."""
        return None
