"""The small interfaces through which the engine's parts reach each other.

Each part takes the others it needs as one of these, not as a whole part (and
never as the façade): what a part may do to another is written here, once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from jobd.core.models import Job, JobSpec, Reservation
from jobd.engine.runqueue import RunQueue
from jobd.run.runner import RunControl
from jobd.store.contract import LockStart


class Wakeup(Protocol):
    """The idle workers (:class:`~.workers.IdleWorkers`)."""

    def wake_one(self) -> None:
        """One more job (or grant) to take: wake one idle worker, if any."""

    def wake_all(self) -> None: ...


class Placement(Protocol):
    """Where intake and operations put a job that may run (:class:`~.admission.Admission`)."""

    def has_room(self) -> bool:
        """Whether a job due now goes to the queue (else to ``pending``)."""

    def not_here(self, job: Job) -> str | None:
        """Why this node may not run ``job`` (its workflow's ``requires``), else None."""

    def enqueue(self, job: Job) -> None:
        """Hold ``job`` and put it in the run queue (even past capacity: it was decided)."""

    def unqueue(self, job_id: int) -> None:
        """Take it out of the run queue and the lineup (its write failed, or it left)."""

    def add_pending(self, job: Job | None = None) -> None:
        """One more job in ``pending`` (``job``: as just committed there, to keep)."""

    def leave_pending(self) -> None: ...

    def schedule_due(self, due_at: float | None) -> None:
        """Make sure the due timer wakes by ``due_at`` (now: at once)."""

    async def process_due(self) -> None: ...

    async def admit(self) -> None:
        """Fill free queue places from ``pending``."""


class Line(Protocol):
    """What workers take from (:class:`~.admission.Admission`)."""

    def next_queued(self) -> int | None:
        """The next job id of the run queue (admitting from pending when it made room)."""

    def admit_soon(self) -> None:
        """Start admitting from pending in a task of its own, when there is any."""


class OneJob(Protocol):
    """What a batch needs of the one-job operations (:class:`~.operations.Operations`)."""

    def handler(self, operation: str) -> Callable[[Job, str], Awaitable[Job | None]]:
        """The handler ``(job, actor)`` of ``operation``; raises ValidationError if unknown."""

    async def operate(
        self, job_id: int, operation: str, actor: str, *, here: bool = False
    ) -> Job | None:
        """The operation on one job, loaded as it is now (forwarded to its node if another
        node holds it, unless ``here``); raises its refusal."""


class Booking(Protocol):
    """What operations need of intake (:class:`~.intake.Intake`)."""

    def reserve(self, job: Job) -> list[Reservation]:
        """Plan and hold the job's reservations in the booking index (before the commit)."""

    async def submit(self, spec: JobSpec, *, actor: str = ..., cause: str = ...) -> Job: ...


class Grants(Protocol):
    """The lock hand-off as others see it (:class:`Handoff`)."""

    def leave(self, job_id: int) -> None:
        """The job left the line: drop its lock wait or hold, hand its assets on."""

    def release(self, job_id: int) -> None:
        """The job's run is over: hand its assets on."""


class Requeue(Protocol):
    """What recovery rebuilds in admission (:class:`~.admission.Admission`)."""

    pending: int

    def enqueue(self, job: Job) -> None: ...

    async def make_due(self, job: Job) -> None:
        """Queued (enqueued before its commit) or pending, as a due job is."""


class Relock(Protocol):
    """What recovery rebuilds in the lock hand-off (:class:`Handoff`)."""

    async def load(self) -> None:
        """Before the first restore: read what the locks' keeper already knows."""

    async def load_adopted(self, job_ids: list[int]) -> None:
        """Before restoring jobs taken over from a lost node (:meth:`load` for them): what
        the locks' keeper knows of these jobs now, for :meth:`restore_waiter`,
        :meth:`restore_holder` and :meth:`restored` to act on."""

    def restore_waiter(self, rc: RunControl) -> None:
        """A job that waited for its assets when the daemon stopped (called in FIFO order)."""

    def restore_holder(self, job: Job) -> None:
        """A job that held its assets when the daemon died: it gets them back first."""

    def restored(self) -> None:
        """After the last restore: whatever lock nobody was restored to is let go."""

    def leave(self, job_id: int) -> None:
        """A restored job that another node of a cluster claimed first: let its locks go."""


class LockView(Protocol):
    """The asset locks as queries show them (:class:`Handoff`)."""

    async def snapshot(self) -> list[dict[str, Any]]:
        """Per asset with holders or waiters, by name: ``{"asset", "holders": [{"job_id",
        "mode"}], "waiters": [{"job_id", "mode", "since"}]}`` (FIFO order; a cluster adds
        each one's ``node``, and its holders' ``since``)."""


class Handoff(Grants, Relock, LockView, Protocol):
    """The per-asset lock hand-off, from a job's pick to the end of its run (SPEC §3.4).

    Two implementations keep the same rules: :class:`~.handoff.LockHandoff` (the
    in-memory LockManager: one node, SQLite) and :class:`~.cluster_handoff.ClusterHandoff`
    (the database's locks, shared by the nodes of a cluster: PostgreSQL)."""

    #: Jobs granted their assets and waiting for a worker, in grant order: workers take
    #: from it (before the run queue), nothing else does.
    granted: deque[int]

    def acquire(self, job: Job) -> bool:
        """True if the job holds its assets now (it asked for none, or holds them already,
        or, in memory, they were free and are now its): the pick may run it."""

    async def wait_for_lock(self, rc: RunControl, start: LockStart | None = None) -> None:
        """Not granted at the pick: write ``waiting-for-lock`` and wait, holding no worker;
        a grant later puts it in :attr:`granted` and wakes a worker. ``start``: how the run
        begins (the step attempt), for a hand-off whose grant writes the start itself.
        It may return before the write has landed (the cluster's does: its worker takes
        the next job at once); a grant is acted on only once it has."""

    def picked(self, job_id: int) -> LockStart | None:
        """A granted job was taken by a worker: the start its grant wrote (its ``running``
        and step attempt are durable: run it, write nothing), or None (write them)."""

    def drained(self) -> None:
        """The node stops (after its last run, before its last flush): let nothing stay
        started that no worker will run."""

    def release_if_involved(self, job_id: int) -> None:
        """Release what the job holds or waits for, if anything."""


class Ids(Protocol):
    """Where intake takes job ids from (:class:`~.intake.Intake`)."""

    async def load_ids(self) -> None:
        """At start-up: where ids go on from (:class:`~.ids.JobIds`)."""


class QueueState(Protocol):
    """The run queue and pending count as queries show them (:class:`~.admission.Admission`)."""

    queue: RunQueue
    pending: int


class RunningState(Protocol):
    """The jobs being run (:class:`~.workers.Workers`)."""

    running: set[int]


class LiveOps(Protocol):
    """What operations do to a live window (:class:`~.live.LiveWindowPart`)."""

    def end_now(self, rc: RunControl) -> bool:
        """End the job's open window at once; False if none is open."""

    def close(self, job_id: int) -> bool:
        """Close the window without ending it; True if it was open."""

    async def pause(self, rc: RunControl, actor: str) -> None: ...


class Reopen(Protocol):
    """What recovery asks of the live windows (:class:`~.live.LiveWindowPart`)."""

    def reopen(self, job: Job) -> None: ...


class WindowView(Protocol):
    """Open windows as queries show them (:class:`jobd.run.windows.LiveWindows`)."""

    def ids(self) -> list[int]: ...

    def __len__(self) -> int: ...
