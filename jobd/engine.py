"""The engine: every operation on a job, the one state-changing path, recovery at start-up.

Every change of a job's state goes through :meth:`Engine._transition`: it
checks the transition table, writes the change and its history row to the
store (guarded in SQL), and only after the COMMIT tells the rest (run queue,
locks, listeners, plugins, the SSE stream). The store is the truth; the run
queue, lock tables, booking index and timers are caches rebuilt from it at
start-up (:meth:`Engine._recover`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from jobd.action import Action, ActionContext
from jobd.bookings import BookingIndex
from jobd.config import Config, WorkflowConfig
from jobd.errors import (
    InvalidTransition,
    JobdError,
    NotApplicable,
    NotFound,
    ShuttingDown,
    ValidationError,
)
from jobd.events import JobEvent
from jobd.locks import LockManager
from jobd.models import ErrorOverlay, HistoryEntry, Job, JobSpec, Reservation, Step
from jobd.plugins import PluginHost
from jobd.runner import CANCEL, PAUSE, SHUTDOWN, RunControl, Runner, RunResult
from jobd.runqueue import RunQueue
from jobd.schedules import Schedules
from jobd.states import (
    ACTIVE,
    EDITABLE,
    HOLDS_RESERVATION,
    JobState,
    StepState,
    allowed_operations,
    check_transition,
)
from jobd.store import KEEP, Changes, GuardFailed, JobFilter, Store
from jobd.templating import render
from jobd.timers import Timers

S = JobState
log = structlog.get_logger("jobd.engine")
#: Bounds on what a job may ask for: a year for a duration, times before the year 9000, so that
#: every stored time can still be shown as a date (and arithmetic on it stays finite).
MAX_DURATION = 366 * 86400.0
LATEST_TIME = 221845392000.0  # 9000-01-01T00:00:00Z
#: How long cancel/pause/stop of a running job wait for it to stop before answering.
OPERATION_WAIT = 5.0
#: Due jobs moved per read (SQLite caps the ``?`` in one ``IN (...)``).
DUE_BATCH = 500
#: Jobs of one batch operation in progress at once (their writes share transactions).
BATCH_CONCURRENCY = 1000


class Engine:
    """Owns the run queue, workers, lock manager, bookings and timers; writes through the store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        plugins: PluginHost,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``store`` comes from ``async with jobd.store.open_store(config.daemon.db_path,
        synchronous=config.daemon.synchronous) as store``; ``plugins`` is a loaded PluginHost."""
        self.config = config
        self.store = store
        self.plugins = plugins
        self.clock = clock
        self.queue = RunQueue(config.daemon.run_queue_size)
        self.locks = LockManager()
        self.booking_index = BookingIndex(config.resources, config.pools)
        self.timers = Timers(clock=clock)
        self.runner = Runner(self)
        self.schedules = Schedules(self)
        self.active: dict[int, RunControl] = {}
        self.running: set[int] = set()
        self._granted: deque[int] = deque()
        self._lock_committed: set[int] = set()
        #: Idle workers, each waiting on its own future: one is woken per job to take, not
        #: all of them (64 workers woken for every submission was 6 % of the loop).
        self._idle_workers: deque[asyncio.Future[None]] = deque()
        self._listeners: list[Callable[[JobEvent], None]] = []
        self._subscribers: set[MemoryObjectSendStream[JobEvent]] = set()
        self._pending = 0
        self._next_id = 0
        self._accepting = False
        self._draining = False
        self._tg: TaskGroup | None = None
        # asyncio.Lock: anyio's yields to the loop even when free, which put a due job behind
        # a whole turn of other work.
        self._due_lock = asyncio.Lock()
        #: Due jobs whose move to queued or pending is being written (see _process_due),
        #: and an event set when there are none.
        self._moving: set[int] = set()
        self._moves_landed = asyncio.Event()
        self._moves_landed.set()
        self._admitting = False
        self._drained = anyio.Event()
        self._has_observers = False
        self._finishers: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._inactive_waiters: dict[int, list[anyio.Event]] = {}
        #: When the one due timer is set for (None: not set).
        self._next_wake: float | None = None

    # ================================================================ lifecycle
    @property
    def accepting(self) -> bool:
        """False while draining: due jobs stay in the store for the next start."""
        return self._accepting

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        """Call ``listener(event)`` (synchronously, on the event loop) after each committed
        change; metrics use this. A raising listener is logged and ignored."""
        self._listeners.append(listener)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover from the store, start workers and timers, then ``task_status.started()``.

        Runs until cancelled; call :meth:`drain` first for a graceful stop.
        """
        self._install_log_sink()
        self._has_observers = self.plugins.observes_events
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self.timers.run)
            await self._recover()
            for _ in range(self.config.daemon.workers):
                tg.start_soon(self._worker)
            self._accepting = True
            await self.schedules.start()
            await self._process_due()
            await self._admit()
            log.info(
                "engine ready",
                workers=self.config.daemon.workers,
                run_queue_size=self.queue.capacity,
                pending=self._pending,
            )
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    if self._finishers:
                        await asyncio.gather(*self._finishers, return_exceptions=True)

    async def drain(self, grace: float) -> None:
        """Stop admitting jobs; let running steps finish for ``grace`` s, then interrupt them
        (recorded as interrupted, resumed on the next start)."""
        self._accepting = False
        self._draining = True
        self.timers.wake_due_at(None, self._process_due)
        with anyio.move_on_after(grace):
            while self.running:
                await self._wait_idle()
        for job_id in list(self.running):
            rc = self.active.get(job_id)
            if rc is not None:
                rc.stop(SHUTDOWN)
        with anyio.move_on_after(max(5.0, self.config.daemon.kill_grace + 2)):
            while self.running:
                await self._wait_idle()
        await self.store.flush()

    async def _wait_idle(self) -> None:
        """Wait until no job runs, or half a second (the caller re-checks)."""
        self._idle.clear()
        with anyio.move_on_after(0.5):
            await self._idle.wait()

    def _install_log_sink(self) -> None:
        try:
            from jobd.logging import set_job_log_sink
        except ImportError:  # pragma: no cover - logging module missing in a partial install
            return
        set_job_log_sink(self._log_line)

    def _log_line(self, job_id: int, step: str | None, level: str, message: str, at: float) -> None:
        self.store.commit_nowait(self.store.changes().append_log(job_id, at, step, level, message))

    # ================================================================ the one path
    async def _transition(
        self,
        job: Job,
        operation: str,
        target: JobState,
        *,
        cause: str,
        actor: str,
        unit: Changes | None = None,
        error: ErrorOverlay | None = KEEP,
        due_at: float | None = KEEP,
        steps: list[Step] | None = None,
        urgent: bool = False,
    ) -> None:
        """Check, write (guarded), commit, then tell everyone. The job object is updated.

        ``steps`` were written in the same unit: their events go out before the job's."""
        check_transition(operation, job.state, target)
        now = self.clock()
        u = unit if unit is not None else self.store.changes()
        u.transition(job.id, job.state, target, now, error=error, due_at=due_at)
        u.record_history(job.id, now, job.state, target, cause, actor)
        previous = job.state
        job.state = target  # claim it now: a concurrent operation sees the new state
        try:
            await self.store.commit(u, urgent=urgent)
        except GuardFailed:
            job.state = previous
            current = await self._current_state(job.id)
            raise InvalidTransition(
                operation,
                current or previous,
                allowed_operations(current or previous),
                job_id=job.id,
            ) from None
        except BaseException:
            job.state = previous
            raise
        job.updated_at = now
        if error is not KEEP:
            job.error = error
        if due_at is not KEEP:
            job.due_at = due_at
        for step in steps or ():
            self._step_event(job, step, previous)
        self._emit(JobEvent(job.id, "state", now, previous, target, cause, actor), job)

    async def _current_state(self, job_id: int) -> JobState | None:
        states = await self.store.job_states([job_id])
        return states[job_id][1] if job_id in states else None

    def _emit(self, event: JobEvent, job: Job | None = None) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed", listener=repr(listener))
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                log.warning("dropping a slow event subscriber")
                self._subscribers.discard(stream)
                stream.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(stream)
        if self._has_observers:
            rc = self.active.get(event.job_id)
            data = job or (rc.job if rc else None)
            self.plugins.job_event(
                data.to_dict() if data else {"id": event.job_id}, event.to_dict()
            )

    # ================================================================ submit & edit
    async def submit(self, spec: JobSpec, *, actor: str = "api", cause: str = "submitted") -> Job:
        """Validate ``spec`` (workflow exists, params templating, plugin validators, bookings),
        store it and return the job. Raises ValidationError, BookingConflict.

        ``cause`` is the first history row's (``resubmit`` names the job it came from).
        The job's id is taken only once everything is checked and booked: a refusal uses
        up no id, so ids stay dense. Nothing between that check and the id awaits."""
        if self._tg is None:
            raise ShuttingDown()
        intake = self._intake(spec, self._next_id + 1, self.clock(), actor, cause)
        self._next_id += 1  # every check passed and the booking is held: take the id
        return (await self._store_intakes([intake]))[0]

    async def submit_many(self, specs: list[JobSpec], *, actor: str = "api") -> list[Job]:
        """Submit ``specs`` all or nothing, in one transaction (``POST /v1/batch/jobs``).

        Every job is validated and booked (against the stored bookings and the batch's
        earlier jobs) before anything is stored; the first refusal raises the job's error
        with ``details.index`` set and the message prefixed ``jobs[i]: ``, and then nothing
        is stored, no booking is kept and no id is used. Returns the jobs in order."""
        if self._tg is None:
            raise ShuttingDown()
        now = self.clock()
        intakes: list[_Intake] = []
        try:
            for index, spec in enumerate(specs):
                try:
                    intakes.append(self._intake(spec, self._next_id + 1 + index, now, actor))
                except JobdError as exc:
                    raise exc.in_batch(index) from None
        except BaseException:
            for intake in intakes:
                self.booking_index.remove_job(intake.job.id)
            raise
        self._next_id += len(intakes)
        return await self._store_intakes(intakes)

    def _intake(
        self, spec: JobSpec, job_id: int, now: float, actor: str, cause: str = "submitted"
    ) -> _Intake:
        """Validate ``spec`` as job ``job_id`` and hold its bookings in the index; nothing is
        written and no id claimed yet. Raises ValidationError, BookingConflict."""
        workflow = self._workflow(spec.workflow)
        if spec.state not in (S.DRAFT, S.TENTATIVE, S.CONFIRMED):
            raise ValidationError(
                f"a job is submitted as draft, tentative or confirmed, not {spec.state}",
                field="state",
            )
        self._validate_spec(spec)
        steps = self._build_steps(workflow, spec)
        job = Job(
            id=job_id, spec=spec, state=spec.state, created_at=now, updated_at=now, steps=steps
        )
        if self.plugins.validates_jobs:
            problems = self.plugins.validate_job(job.to_dict(), self.config)
            if problems:
                raise ValidationError(problems)
        for step in steps:
            step.job_id = job.id
        job.reservations = self._reserve(job) if spec.state in HOLDS_RESERVATION else []
        if (
            spec.state in (S.DRAFT, S.TENTATIVE)
            and spec.start_at is not None
            and spec.start_at <= now
        ):
            job.error = ErrorOverlay(
                "not-confirmed",
                "the start time passed before the job was confirmed; it will not run",
                now,
            )
        job.due_at = spec.due_at if spec.due_at is not None else now
        return _Intake(job, now, actor, [(None, spec.state, cause)])

    async def _store_intakes(self, intakes: list[_Intake]) -> list[Job]:
        """Place accepted jobs (queued, pending or waiting for their time), write them in ONE
        unit, then tell everyone. Returns each job as GET would show it after the write."""
        unit = self.store.changes()
        shown = [self._place(intake, unit) for intake in intakes]
        try:
            await self.store.commit(unit)
        except BaseException:
            for intake in intakes:
                self.booking_index.remove_job(intake.job.id)
                self._unqueue(intake.job.id)
            raise
        for intake, job in zip(intakes, shown, strict=True):
            self._after_stored(intake, job.state)
        return shown

    def _place(self, intake: _Intake, unit: Changes) -> Job:
        """Due now: queued (or pending when the queue is full); add the job's rows to ``unit``."""
        job, now, actor, history = intake.job, intake.now, intake.actor, intake.history
        spec = job.spec
        due_now = spec.state == S.CONFIRMED and (spec.due_at is None or spec.due_at <= now)
        if due_now and self._accepting:
            target = S.QUEUED if self._has_room() else S.PENDING
            history.append((S.CONFIRMED, target, "due"))
            job.state = target
        unit.insert_job(job)
        for step in job.steps:
            unit.insert_step(step)
        for res in job.reservations:
            unit.reserve(res)
        for frm, to, cause in history:
            unit.record_history(job.id, now, frm, to, cause, actor)
        # The caller gets the job as GET would show it right after this write (with its
        # history), not as a worker may have changed it meanwhile; the engine's own copy
        # keeps no history in memory.
        shown = replace_job(
            job, steps=[step.copy() for step in job.steps], reservations=job.reservations
        )
        shown.history = [HistoryEntry(now, frm, to, cause, actor) for frm, to, cause in history]
        if shown.state == S.QUEUED:
            self._enqueue_reserved(job)
            # A worker may take it now: its `running` write queues behind this insert, and
            # the writer applies them in order, so the run starts one commit sooner.
            self._wake_worker()
        return shown

    def _after_stored(self, intake: _Intake, state: JobState) -> None:
        job = intake.job
        if state == S.PENDING:
            self._pending += 1
        elif state == S.CONFIRMED:
            self._schedule_due(job.due_at)
        elif state != S.QUEUED and job.error is None:
            # Draft or tentative: wake at its start to mark it `not-confirmed` if still so.
            self._schedule_due(job.spec.start_at)
        for frm, to, cause in intake.history:
            self._emit(JobEvent(job.id, "state", intake.now, frm, to, cause, intake.actor), job)

    def _workflow(self, name: str) -> WorkflowConfig:
        workflow = self.config.workflows.get(name)
        if workflow is None:
            known = ", ".join(sorted(self.config.workflows)) or "none"
            raise ValidationError(
                f"unknown workflow {name!r} (configured: {known})", field="workflow"
            )
        return workflow

    def _validate_spec(self, spec: JobSpec) -> None:
        problems = []
        if not -1000 <= spec.priority <= 1000:
            problems.append(f"priority {spec.priority} is outside -1000..1000")
        if spec.end_at is not None and spec.start_at is None:
            problems.append("end_at needs start_at")
        if spec.end_at is not None and spec.start_at is not None and spec.end_at < spec.start_at:
            problems.append("end_at is before start_at")
        if (spec.resources or spec.pools) and spec.start_at is None:
            problems.append("booking resources or pools needs start_at (and end_at)")
        for name in ("preroll", "postroll"):
            value = getattr(spec, name)
            if not 0 <= value <= MAX_DURATION:
                problems.append(f"{name} must be between 0 and {MAX_DURATION:.0f} s, got {value}")
        for name in ("timeout", "lock_timeout"):
            value = getattr(spec, name)
            if value is not None and not 0 < value <= MAX_DURATION:
                problems.append(f"{name} must be > 0 and at most {MAX_DURATION:.0f} s, got {value}")
        for name in ("start_at", "end_at"):
            value = getattr(spec, name)
            if value is not None and not 0 <= value <= LATEST_TIME:
                problems.append(f"{name} must lie between 1970 and 9000")
        for asset in (*spec.assets, *spec.shared_assets):
            if not isinstance(asset, str) or not asset:
                problems.append(f"asset names must be non-empty strings, got {asset!r}")
        if problems:
            raise ValidationError(problems)
        self._check_booking_names(spec)

    def _check_booking_names(self, spec: JobSpec) -> None:
        """Refuse resources and pools the config does not know, in every state (a draft
        books nothing, but naming nothing real is a mistake now, not at confirm time)."""
        for field, names, known in (
            ("resources", spec.resources, self.config.resources),
            ("pools", spec.pools, self.config.pools),
        ):
            unknown = [name for name in names if name not in known]
            if unknown:
                kind = field.rstrip("s")
                raise ValidationError(
                    [f"unknown {kind} {name!r}" for name in unknown]
                    + [f"configured {field}: {', '.join(sorted(known)) or 'none'}"],
                    field=field,
                )

    def _build_steps(self, workflow: WorkflowConfig, spec: JobSpec) -> list[Step]:
        defaults = self.config.defaults
        steps = []
        for idx, sc in enumerate(workflow.steps):
            if self.action(sc.action) is None:
                raise ValidationError(
                    f"workflow {workflow.name!r} step {sc.name!r} uses unknown action "
                    f"{sc.action!r} (loaded: {', '.join(sorted(self.plugins.actions)) or 'none'})",
                    field="workflow",
                )
            params = render(sc.params, spec.params, where=f"steps.{sc.name}.params")
            steps.append(
                Step(
                    job_id=0,
                    idx=idx,
                    name=sc.name,
                    action=sc.action,
                    params=params,
                    timeout=sc.timeout if sc.timeout is not None else defaults.timeout,
                    retries=sc.retries if sc.retries is not None else defaults.retries,
                    retry_backoff=(
                        sc.retry_backoff if sc.retry_backoff is not None else defaults.retry_backoff
                    ),
                    isolation=sc.isolation,
                )
            )
        return steps

    def _reserve(self, job: Job) -> list[Reservation]:
        """Plan and hold the job's reservations in the index (before the commit, so no
        concurrent submission can take the same slot)."""
        spec = job.spec
        window = spec.window
        if window is None or not (spec.resources or spec.pools):
            return []
        if spec.end_at is None:
            raise ValidationError("booking resources or pools needs end_at", field="end_at")
        job_dict = job.to_dict()

        def select(pool: str, candidates: list[str]) -> str | None:
            return self.plugins.select_resource(pool, candidates, job_dict)

        planned = self.booking_index.plan(
            job.id, spec.resources, spec.pools, window[0], window[1], select=select
        )
        self.booking_index.add(planned)
        return planned

    async def edit(self, job_id: int, changes: dict[str, Any], *, actor: str = "api") -> Job:
        """PATCH: change spec fields while draft/tentative/confirmed; reservations re-checked."""
        job = await self._load(job_id)
        if job.state not in EDITABLE:
            raise InvalidTransition("edit", job.state, allowed_operations(job.state), job_id=job_id)
        allowed = {
            "name",
            "params",
            "assets",
            "shared_assets",
            "resources",
            "pools",
            "start_at",
            "end_at",
            "preroll",
            "postroll",
            "priority",
            "timeout",
            "lock_timeout",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValidationError(f"cannot edit {', '.join(sorted(unknown))}")
        lists = {"assets", "shared_assets", "resources", "pools"}
        norm: dict[str, Any] = {k: tuple(v) if k in lists else v for k, v in changes.items()}
        spec = replace(job.spec, **norm)
        self._validate_spec(spec)
        steps = self._build_steps(self._workflow(spec.workflow), spec)
        for step in steps:
            step.job_id = job_id
        candidate = replace_job(job, spec=spec)
        problems = self.plugins.validate_job(candidate.to_dict(), self.config)
        if problems:
            raise ValidationError(problems)
        old = self.booking_index.for_job(job_id)
        self.booking_index.remove_job(job_id)
        try:
            new_res = self._reserve(candidate) if job.state in HOLDS_RESERVATION else []
        except JobdError:
            self.booking_index.add(old)
            raise
        due = spec.due_at if spec.due_at is not None else self.clock()
        unit = self.store.changes().release(job_id)
        for res in new_res:
            unit.reserve(res)
        unit.redefine_job(job_id, spec, due, steps)
        try:
            await self._transition(job, "edit", job.state, cause="edited", actor=actor, unit=unit)
        except BaseException:
            self.booking_index.remove_job(job_id)
            self.booking_index.add(old)
            raise
        # Confirmed: its due time; draft or tentative: its start (`not-confirmed` check).
        self._schedule_due(spec.due_at if job.state == S.CONFIRMED else spec.start_at)
        return await self.get_job(job_id)

    # ================================================================ operations
    async def operate(self, job_id: int, operation: str, *, actor: str = "api") -> Job | None:
        """Apply a public operation of SPEC §2 (cancel, stop, pause, resume, retry, restart,
        confirm, tentative, unconfirm, resubmit, invoice-ready, invoiced, delete).

        Returns the job after the change (for ``resubmit`` the NEW job; for ``delete`` None).
        Raises NotFound, InvalidTransition (409), BookingConflict (409).
        """
        handler = self._operations().get(operation)
        if handler is None:
            raise ValidationError(
                f"unknown operation {operation!r} (known: {', '.join(self._operations())})",
                field="operation",
            )
        job = await self._load(job_id)
        check_transition(operation, job.state)
        result = await handler(job, actor)
        if operation == "delete":
            return None
        if isinstance(result, Job):
            return result
        return await self.get_job(job_id)

    async def operate_many(
        self, job_ids: list[int], operation: str, *, actor: str = "api"
    ) -> BatchOutcome:
        """Apply ``operation`` to each job of ``job_ids`` (``POST /v1/batch/{operation}``),
        concurrently so that their writes share transactions. A job whose state does not
        allow it, or that does not exist, is refused with the error :meth:`operate` would
        raise (naming its state and what is allowed there); the others go ahead."""
        handler = self._operations().get(operation)
        if handler is None:
            raise ValidationError(
                f"unknown operation {operation!r} (known: {', '.join(self._operations())})",
                field="operation",
            )
        ids = list(dict.fromkeys(job_ids))
        jobs = await self._load_many(ids)
        outcome: dict[int, JobdError | Job | None] = {}
        limiter = anyio.CapacityLimiter(BATCH_CONCURRENCY)

        async def one(job_id: int) -> None:
            async with limiter:
                outcome[job_id] = await self._operate_one(
                    jobs.get(job_id), job_id, operation, handler, actor
                )

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(one, job_id)
        return BatchOutcome.of(ids, outcome)

    async def _operate_one(
        self,
        job: Job | None,
        job_id: int,
        operation: str,
        handler: Callable[[Job, str], Any],
        actor: str,
    ) -> JobdError | Job | None:
        """One job of a batch: the new job (resubmit), None (done) or the refusal."""
        if job is None:
            return NotFound("job", job_id)
        try:
            try:
                check_transition(operation, job.state)
            except InvalidTransition:
                allowed = allowed_operations(job.state)
                raise InvalidTransition(operation, job.state, allowed, job_id=job_id) from None
            result = await handler(job, actor)
        except JobdError as exc:
            return exc
        return result if isinstance(result, Job) else None

    async def _load_many(self, job_ids: list[int]) -> dict[int, Job]:
        """The jobs of ``job_ids`` that exist: a running one as the engine holds it, the others
        read in chunks (one reader hop each)."""
        jobs = {i: self.active[i].job for i in job_ids if i in self.active}
        rest = [i for i in job_ids if i not in jobs]
        for start in range(0, len(rest), DUE_BATCH):
            for job in await self.store.load_jobs(rest[start : start + DUE_BATCH]):
                # Loaded while the read was in flight: the engine's copy is the live one.
                jobs[job.id] = self.active[job.id].job if job.id in self.active else job
        return jobs

    def _operations(self) -> dict[str, Callable[[Job, str], Any]]:
        return {
            "cancel": self._op_cancel,
            "stop": self._op_stop,
            "pause": self._op_pause,
            "resume": self._op_resume,
            "retry": self._op_retry,
            "restart": self._op_restart,
            "confirm": self._op_confirm,
            "tentative": self._op_tentative,
            "unconfirm": self._op_unconfirm,
            "resubmit": self._op_resubmit,
            "invoice-ready": self._op_invoice_ready,
            "invoiced": self._op_invoiced,
            "delete": self._op_delete,
        }

    async def _load(self, job_id: int) -> Job:
        rc = self.active.get(job_id)
        if rc is not None:
            return rc.job
        job = await self.store.load_job(job_id, full=False)
        if job is None:
            raise NotFound("job", job_id)
        return job

    async def _op_cancel(self, job: Job, actor: str) -> None:
        rc = self.active.get(job.id)
        if job.state in (S.RUNNING, S.CANCEL_REQUESTED) and rc is not None:
            if job.state == S.RUNNING:
                await self._transition(
                    job, "cancel", S.CANCEL_REQUESTED, cause="cancel requested", actor=actor
                )
            rc.stop(CANCEL)
            await self._settle_briefly(job.id)
            return
        await self._leave_line(job)
        await self._transition(
            job,
            "cancel",
            S.CANCELED,
            cause="canceled",
            actor=actor,
            unit=self.store.changes().release(job.id),
        )
        self.booking_index.remove_job(job.id)

    async def _op_stop(self, job: Job, actor: str) -> None:
        rc = self.active.get(job.id)
        if rc is None or job.spec.end_at is None:
            raise NotApplicable(
                f"job {job.id} has no live window to stop (no end_at); use cancel to end its run",
                {"job_id": job.id},
            )
        self._history_only(job, "stop requested: ending the live window now", actor)
        if rc.window_scope is not None:
            rc.window_scope.cancel()
        else:
            # Steps still running: end the window as soon as they are done.
            rc.job.spec = replace(rc.job.spec, end_at=self.clock(), postroll=0.0)
        await self._settle_briefly(job.id)

    async def _op_pause(self, job: Job, actor: str) -> None:
        rc = self.active.get(job.id)
        if job.state == S.RUNNING and rc is not None:
            rc.stop(PAUSE)
            await self._settle_briefly(job.id)
            return
        await self._leave_line(job)
        await self._transition(job, "pause", S.PAUSED, cause="paused", actor=actor)

    async def _op_resume(self, job: Job, actor: str) -> None:
        due = self._due_from_now(job)
        await self._transition(job, "resume", S.CONFIRMED, cause="resumed", actor=actor, due_at=due)
        self._schedule_due(due)

    def _due_from_now(self, job: Job) -> float:
        """Its own due time if that is still ahead, else now."""
        now = self.clock()
        due = job.spec.due_at
        return due if due is not None and due > now else now

    async def _op_retry(self, job: Job, actor: str) -> None:
        await self._rerun(job, "retry", actor, reset_all=False)

    async def _op_restart(self, job: Job, actor: str) -> None:
        await self._rerun(job, "restart", actor, reset_all=True)

    async def _rerun(self, job: Job, operation: str, actor: str, *, reset_all: bool) -> None:
        job.steps = await self.store.load_steps(job.id)
        unit = self.store.changes()
        for step in job.steps:
            if reset_all or step.state != StepState.COMPLETED:
                unit.reset_step(job.id, step.idx)
        had_reservations = job.state == S.PAUSED
        reservations = [] if had_reservations else self._reserve(job)
        for res in reservations:
            unit.reserve(res)
        try:
            due = self._due_from_now(job)
            await self._transition(
                job,
                operation,
                S.CONFIRMED,
                cause=f"{operation} requested",
                actor=actor,
                unit=unit,
                error=None,
                due_at=due,
            )
        except BaseException:
            if not had_reservations:
                self.booking_index.remove_job(job.id)
            raise
        self._schedule_due(due)

    async def _op_confirm(self, job: Job, actor: str) -> None:
        await self._book_and_move(job, "confirm", S.CONFIRMED, actor)
        self._schedule_due(job.due_at)
        await self._process_due()

    async def _op_tentative(self, job: Job, actor: str) -> None:
        await self._book_and_move(job, "tentative", S.TENTATIVE, actor)

    async def _book_and_move(self, job: Job, op: str, target: JobState, actor: str) -> None:
        unit = self.store.changes()
        new = []
        if job.state == S.DRAFT:
            job.reservations = []
            new = self._reserve(job)
            for res in new:
                unit.reserve(res)
        due = job.spec.due_at if job.spec.due_at is not None else self.clock()
        error = job.error
        if error is not None and error.code == "not-confirmed" and target == S.CONFIRMED:
            error = None if (job.spec.start_at or 0) > self.clock() else error
        try:
            await self._transition(
                job,
                op,
                target,
                cause=f"{op} requested",
                actor=actor,
                unit=unit,
                due_at=due,
                error=error,
            )
        except BaseException:
            if new:
                self.booking_index.remove_job(job.id)
            raise

    async def _op_unconfirm(self, job: Job, actor: str) -> None:
        await self._transition(job, "unconfirm", S.TENTATIVE, cause="unconfirmed", actor=actor)

    async def _op_resubmit(self, job: Job, actor: str) -> Job:
        spec = replace(
            job.spec,
            state=S.CONFIRMED if job.spec.state not in (S.DRAFT, S.TENTATIVE) else job.spec.state,
        )
        # The old job stays exactly as it was (SPEC §2): only the new one's history says
        # where it came from.
        return await self.submit(spec, actor=actor, cause=f"resubmitted from job {job.id}")

    async def _op_invoice_ready(self, job: Job, actor: str) -> None:
        await self._transition(
            job, "invoice-ready", S.READY_FOR_INVOICE, cause="final figures fixed", actor=actor
        )

    async def _op_invoiced(self, job: Job, actor: str) -> None:
        await self._transition(job, "invoiced", S.INVOICED, cause="invoiced", actor=actor)

    async def _op_delete(self, job: Job, actor: str) -> None:
        now = self.clock()
        unit = (
            self.store.changes()
            .delete_job(job.id, job.state)
            .record_history(job.id, now, job.state, None, "deleted", actor)
        )
        try:
            await self.store.commit(unit)
        except GuardFailed:
            raise InvalidTransition(
                "delete", job.state, allowed_operations(job.state), job_id=job.id
            ) from None
        self.booking_index.remove_job(job.id)
        self._emit(JobEvent(job.id, "deleted", now, job.state, None, "deleted", actor))

    def _history_only(self, job: Job, cause: str, actor: str) -> None:
        self.store.commit_nowait(
            self.store.changes().record_history(
                job.id, self.clock(), job.state, job.state, cause, actor
            )
        )

    async def _leave_line(self, job: Job) -> None:
        """Take a job that is not running out of the queue, lock waits, or pending count."""
        if job.state == S.PENDING:
            self._pending = max(0, self._pending - 1)
        self._unqueue(job.id)
        granted = (
            self.locks.release(job.id)
            if self.locks.is_waiting(job.id) or self.locks.holds(job.id)
            else []
        )
        self._lock_committed.discard(job.id)
        self._dispatch_grants(granted)
        await self._admit()

    def _unqueue(self, job_id: int) -> None:
        self.queue.remove(job_id)
        if job_id in self._granted:
            self._granted.remove(job_id)
        self.active.pop(job_id, None)

    async def _settle_briefly(self, job_id: int) -> None:
        """Give a stopping run a few seconds to finish, so the answer usually shows the end
        state; a slow end script or kill grace leaves it in ``cancel-requested``/``running``."""
        with anyio.move_on_after(OPERATION_WAIT):
            await self._wait_until_inactive(job_id)

    async def _wait_until_inactive(self, job_id: int) -> None:
        while job_id in self.active:
            event = anyio.Event()
            self._inactive_waiters.setdefault(job_id, []).append(event)
            await event.wait()

    def _mark_inactive(self, job_id: int) -> None:
        self.active.pop(job_id, None)
        for event in self._inactive_waiters.pop(job_id, []):
            event.set()

    # ================================================================ due, queue, admission
    def _has_room(self) -> bool:
        return self._pending == 0 and not self.queue.full()

    def _enqueue_reserved(self, job: Job) -> None:
        self.active[job.id] = RunControl(job)
        self.queue.push(job.id, job.spec.priority, job.due_at or 0.0, force=True)

    def _schedule_due(self, due_at: float | None) -> None:
        if due_at is None or not self._accepting:
            return
        if due_at <= self.clock():
            if self._tg is not None:
                self._tg.start_soon(self._process_due)
            return
        current = self._next_wake
        if current is None or due_at < current:
            self._next_wake = due_at
            self.timers.wake_due_at(due_at, self._process_due)

    async def _process_due(self) -> None:
        """Move every confirmed job whose time has come into the queue (or pending)."""
        if not self._accepting:
            return
        async with self._due_lock:
            while True:
                now = self.clock()
                plan = await self.store.load_due(now, DUE_BATCH)
                jobs = [
                    job
                    for job in plan.due
                    if job.state == S.CONFIRMED
                    and job.id not in self.active
                    and job.id not in self._moving
                ]
                if len(plan.due) < DUE_BATCH:  # that was all, as of now
                    break
                # A backlog: move this part before reading the next (it reads the same rows
                # until these writes land). All at once: their writes share one commit.
                if jobs:
                    await self._each(self._make_due, jobs)
                elif self._moving:  # all of them are being moved already: let that land
                    await self._moves_landed.wait()
                else:  # all in other hands (an operation on each is landing): look again
                    plan.next_wake = now + 0.05  # soon, for the due ones not read yet
                    break
            if jobs and self._tg is not None:
                # The usual case, a few jobs: the timer goes on to the next due time while
                # their writes land. Each decides queue or pending before its first await.
                self._moving.update(job.id for job in jobs)
                self._tg.start_soon(self._move_due, jobs)
            self._next_wake = plan.next_wake
            self.timers.wake_due_at(self._next_wake, self._process_due)
            await self._mark_unconfirmed(plan.unconfirmed_started, now)

    async def _move_due(self, jobs: list[Job]) -> None:
        self._moves_landed.clear()
        try:
            await self._each(self._make_due, jobs)
        except Exception:
            log.exception("moving due jobs failed", jobs=[job.id for job in jobs])
        finally:
            self._moving.difference_update(job.id for job in jobs)
            if not self._moving:
                self._moves_landed.set()

    async def _make_due(self, job: Job) -> None:
        if self._has_room():
            self._enqueue_reserved(job)
            self._wake_worker()  # a worker's `running` write may follow this one (see submit)
            try:
                await self._transition(job, "due", S.QUEUED, cause="due", actor="scheduler")
            except BaseException:
                self._unqueue(job.id)
                raise
        else:
            await self._transition(
                job, "due", S.PENDING, cause="due; run queue full", actor="scheduler"
            )
            self._pending += 1

    async def _mark_unconfirmed(self, started: list[int], now: float) -> None:
        for job_id in started:
            overlay = ErrorOverlay(
                "not-confirmed",
                "the start time passed while the job was not confirmed; it will not run",
                now,
            )
            await self.store.commit(
                self.store.changes().set_error(job_id, overlay, now, only_if_clear=True)
            )
            self._emit(
                JobEvent(
                    job_id,
                    "error",
                    now,
                    cause="not-confirmed",
                    actor="scheduler",
                    data=overlay.to_dict(),
                )
            )

    async def _admit(self) -> None:
        """Fill free queue places from ``pending``: priority first, then due time."""
        if self._pending == 0 or self.queue.full() or self._admitting or not self._accepting:
            return
        self._admitting = True
        try:
            while self._pending > 0 and not self.queue.full():
                ids = await self.store.pending_jobs(self.queue.free)
                if not ids:
                    self._pending = 0
                    break
                jobs = [
                    job
                    for job in await self.store.load_jobs(ids)
                    if job.state == S.PENDING and job.id not in self.active
                ]
                if not jobs:
                    break
                await self._each(self._admit_one, jobs)
        finally:
            self._admitting = False

    async def _admit_one(self, job: Job) -> None:
        self._enqueue_reserved(job)
        self._wake_worker()  # a worker's `running` write may follow this one (see submit)
        try:
            await self._transition(job, "admitted", S.QUEUED, cause="admitted", actor="scheduler")
        except BaseException:
            self._unqueue(job.id)
            raise
        self._pending -= 1

    async def _each(self, operation: Callable[[Job], Awaitable[None]], jobs: list[Job]) -> None:
        """Run ``operation`` on every job concurrently (their commits share a batch); a job
        that changed meanwhile is logged and skipped, not fatal to the others."""
        results = await asyncio.gather(*(operation(job) for job in jobs), return_exceptions=True)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, JobdError):
                log.info("job changed while being moved", job_id=job.id, reason=str(result))
            elif isinstance(result, BaseException):
                raise result

    # ================================================================ workers
    async def _worker(self) -> None:
        while True:
            job_id, granted = await self._take()
            rc = self.active.get(job_id)
            if rc is None:
                continue
            try:
                await self._pick(rc, granted)
            except JobdError as exc:
                # Canceled, deleted, or its submission failed to commit, while being picked.
                log.info("job left the line before it ran", job_id=job_id, reason=str(exc))
                if self.locks.holds(job_id) or self.locks.is_waiting(job_id):
                    self._dispatch_grants(self.locks.release(job_id))
            except Exception:
                log.exception("worker failed on a job", job_id=job_id)

    async def _take(self) -> tuple[int, bool]:
        while True:
            if self._draining:
                # Draining starts nothing new: queued jobs stay queued in the store and the
                # next start takes them in the same order.
                await anyio.sleep_forever()
            if self._granted:
                return self._granted.popleft(), True
            job_id = self.queue.pop()
            if job_id is not None:
                if self._pending and self._tg is not None:
                    self._tg.start_soon(self._admit)
                return job_id, False
            idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle_workers.append(idle)
            await idle

    def _wake_worker(self) -> None:
        """Wake one idle worker (if any): there is one more job to take."""
        self._wake_workers(1)

    def _wake_workers(self, n: int) -> None:
        while n > 0 and self._idle_workers:
            idle = self._idle_workers.popleft()
            if not idle.done():  # a worker cancelled at shutdown leaves a cancelled future
                idle.set_result(None)
                n -= 1

    async def _pick(self, rc: RunControl, granted: bool) -> None:
        job = rc.job
        if not granted:
            if not self.locks.holds(job.id) and not self.locks.acquire(
                job.id, job.spec.assets, job.spec.shared_assets, now=self.clock()
            ):
                await self._wait_for_lock(rc)
                return
            operation, cause = "picked", "picked by a worker"
        else:
            self._lock_committed.discard(job.id)
            operation, cause = "lock-granted", "lock granted"
        if not job.steps:
            job.steps = await self.store.load_steps(job.id)
        workflow = self.config.workflows.get(job.spec.workflow)
        unit = self._prestart(rc, workflow)
        # Urgent when its assets were handed on: every job waiting for them waits on this.
        await self._transition(
            job, operation, S.RUNNING, cause=cause, actor="scheduler", unit=unit, urgent=granted
        )
        for step in job.steps:
            if step.idx == rc.prestarted:
                self._step_event(job, step)  # after the job's `running`, which came first
        await self._execute(rc, workflow)

    def _prestart(self, rc: RunControl, workflow: WorkflowConfig | None) -> Changes:
        """Record the first step's first attempt in the same write as the job's ``running``.

        Only when nothing runs before that step (no start script still to run)."""
        job, unit = rc.job, self.store.changes()
        rc.started = rc.started or any(s.attempts for s in job.steps)
        if workflow is None:
            return unit
        rc.defer_last = job.spec.end_at is None and workflow.end_script is None
        if not rc.started and workflow.start_script is not None:
            return unit
        step = next((s for s in job.steps if s.state != StepState.COMPLETED), None)
        if step is None:
            return unit
        step.attempts += 1
        step.state, step.started_at, step.ended_at, step.error = (
            StepState.RUNNING,
            self.clock(),
            None,
            None,
        )
        rc.prestarted = step.idx
        return unit.record_step(step)

    async def _wait_for_lock(self, rc: RunControl) -> None:
        job = rc.job
        held = ", ".join((*job.spec.assets, *job.spec.shared_assets))
        await self._transition(
            job,
            "picked",
            S.WAITING_FOR_LOCK,
            cause=f"waiting for assets: {held}",
            actor="scheduler",
        )
        if self.locks.holds(job.id):  # granted while the write was landing
            self._granted.append(job.id)
            self._wake_worker()
            return
        self._lock_committed.add(job.id)
        if job.spec.lock_timeout and self._tg is not None:
            self._tg.start_soon(self._lock_timer, rc, job.spec.lock_timeout)

    async def _lock_timer(self, rc: RunControl, limit: float) -> None:
        timeout = limit
        await anyio.sleep(timeout)
        job = rc.job
        if not self.locks.is_waiting(job.id) or job.state != S.WAITING_FOR_LOCK:
            return
        self._dispatch_grants(self.locks.release(job.id))
        self._lock_committed.discard(job.id)
        overlay = ErrorOverlay(
            "lock-timeout",
            f"waited more than {timeout:g} s for assets "
            f"{', '.join((*job.spec.assets, *job.spec.shared_assets))}",
            self.clock(),
        )
        try:
            await self._transition(
                job,
                "lock-timeout",
                S.FAILED,
                cause="lock timeout",
                actor="scheduler",
                error=overlay,
                unit=self.store.changes().release(job.id),
            )
        finally:
            self.booking_index.remove_job(job.id)
            self._mark_inactive(job.id)

    def _dispatch_grants(self, owners: list[int]) -> None:
        for owner in owners:
            if owner in self._lock_committed:
                self._lock_committed.discard(owner)
                self._granted.append(owner)
                self._wake_worker()
            # else: its waiting-for-lock write is still landing; _wait_for_lock sees holds()

    async def _execute(self, rc: RunControl, workflow: WorkflowConfig | None) -> None:
        """Run the job, then free its assets and this worker before the outcome is written.

        Once the steps and the end script are over, the assets are no longer touched, so
        the next waiter may start while the outcome's commit lands (in its own task)."""
        job = rc.job
        self.running.add(job.id)
        try:
            result = await self._run(rc, workflow)
        except BaseException:
            self._dispatch_grants(self.locks.release(job.id))
            self._settled(job.id)
            raise
        self._dispatch_grants(self.locks.release(job.id))
        # A bare asyncio task: this is the hottest spawn in jobd and anyio's start_soon costs
        # several times more. It is shielded inside and awaited by run() on the way out.
        task = asyncio.get_running_loop().create_task(self._record_outcome(rc, result))
        self._finishers.add(task)
        task.add_done_callback(self._finishers.discard)

    async def _run(self, rc: RunControl, workflow: WorkflowConfig | None) -> RunResult:
        job = rc.job
        if workflow is None:
            return RunResult(
                S.FAILED,
                "workflow removed from the configuration",
                ErrorOverlay(
                    "unknown-workflow",
                    f"workflow {job.spec.workflow!r} is no longer configured",
                    self.clock(),
                ),
            )
        result = await self.runner.run(rc, workflow)
        if result.outcome in (None, S.PAUSED) or workflow.end_script is None:
            return result
        with anyio.CancelScope(shield=True):
            problem = await self.run_script(job, workflow.end_script, "end", str(result.outcome))
        return _with_end_script_problem(result, problem, self.clock())

    async def _record_outcome(self, rc: RunControl, result: RunResult) -> None:
        try:
            # A bare asyncio task outside the task group: nothing cancels it, no shield needed.
            await self._conclude(rc, result)
        except JobdError as exc:
            log.error("could not record a job's outcome", job_id=rc.job.id, error=str(exc))
        finally:
            self._settled(rc.job.id)

    def _settled(self, job_id: int) -> None:
        self.running.discard(job_id)
        self._mark_inactive(job_id)
        if not self.running:
            self._idle.set()
        if self._pending and self._tg is not None and self._accepting:
            self._tg.start_soon(self._admit)

    async def _conclude(self, rc: RunControl, result: RunResult) -> None:
        job = rc.job
        if result.outcome is None:  # shutdown: left running, recovery resumes it
            log.info("run interrupted by shutdown", job_id=job.id)
            return
        if result.outcome == S.PAUSED:
            await self._transition(job, "pause", S.PAUSED, cause=result.cause, actor="api")
            return
        error = result.error
        if error is None and result.outcome != S.COMPLETED:
            error = job.error  # keep an overlay whose cause is not gone
        unit = self.store.changes()
        if job.spec.resources or job.spec.pools:
            unit.release(job.id)
        for step in rc.deferred:
            unit.record_step(step)
        await self._transition(
            job,
            "finished",
            result.outcome,
            cause=result.cause,
            actor="scheduler",
            error=error,
            unit=unit,
            steps=rc.deferred,
        )
        rc.deferred.clear()
        self.booking_index.remove_job(job.id)

    # ================================================================ RunHost
    def action(self, name: str) -> Action | None:
        return self.plugins.actions.get(name)

    def now(self) -> float:
        return self.clock()

    async def save_step(self, job: Job, step: Step) -> None:
        await self.store.commit(self.store.changes().record_step(step))
        self._step_event(job, step)

    async def save_pgid(self, job: Job, step: Step) -> None:
        await self.store.commit(self.store.changes().set_step_pgid(job.id, step.idx, step.pgid))

    def _step_event(self, job: Job, step: Step, job_state: JobState | None = None) -> None:
        state = job.state if job_state is None else job_state
        data: dict[str, Any] = {"state": str(step.state), "attempt": step.attempts}
        if step.ended_at is not None and step.started_at is not None:
            data["duration"] = step.ended_at - step.started_at
        if step.error:
            data["error"] = step.error
        self._emit(
            JobEvent(
                job.id,
                "step",
                self.clock(),
                state,
                state,
                f"step {step.name} {step.state}",
                "scheduler",
                step.name,
                data,
            )
        )

    async def set_progress(self, job: Job, pct: float, message: str | None) -> None:
        job.progress, job.progress_message = pct, message
        self.store.commit_nowait(self.store.changes().set_progress(job.id, pct, message))
        self._emit(
            JobEvent(
                job.id,
                "progress",
                self.clock(),
                cause="progress",
                actor="scheduler",
                data={"progress": pct, "message": message},
            )
        )

    async def run_isolated(
        self, step: Step, params: dict[str, Any], ctx: ActionContext
    ) -> Mapping[str, Any] | None:
        from jobd.isolation import context_data, run_isolated

        plugin_file, module_name = self.plugins.isolation_target(step.action)
        return await run_isolated(
            step.action, plugin_file, module_name, params, context_data(ctx), log=ctx.log
        )

    async def run_script(
        self, job: Job, path: Path, event: Literal["start", "end"], outcome: str | None
    ) -> str | None:
        from jobd.scripts import run_script

        timeout = self.config.defaults.script_timeout
        workflow = self.config.workflows.get(job.spec.workflow)
        if workflow is not None and workflow.script_timeout is not None:
            timeout = workflow.script_timeout
        slog = structlog.get_logger("jobd.script").bind(job_id=job.id, step=f"{event}-script")
        result = await run_script(
            path,
            event=event,
            job=job.to_dict(),
            outcome=outcome,
            timeout=timeout,
            kill_grace=self.config.daemon.kill_grace,
            log=slog,
        )
        return None if result.ok else f"{event} script {path}: {result.problem}"

    # ================================================================ recovery
    async def _recover(self) -> None:
        self._next_id = await self.store.max_job_id()
        # In the reader's thread, before anything else uses the index (workers and the API
        # start after recovery).
        await self.store.read_reservations(self.booking_index.load_sorted)
        invalid = await self._revalidate_bookings("recovery")  # the config may have changed
        if invalid:
            log.warning("bookings the configuration no longer allows", warnings=invalid)
        self._pending = await self.store.count_state(S.PENDING)
        active = await self.store.jobs_in_states(ACTIVE)
        waiting = []
        for job in active:
            if job.state in (S.RUNNING, S.CANCEL_REQUESTED):
                await self._recover_running(job)
            elif job.state == S.QUEUED:
                self._enqueue_reserved(job)
            else:
                waiting.append(job)
        for job in sorted(waiting, key=lambda j: (j.updated_at, j.id)):
            rc = RunControl(job)
            self.active[job.id] = rc
            granted = self.locks.acquire(
                job.id, job.spec.assets, job.spec.shared_assets, now=self.clock()
            )
            if granted:
                self._granted.append(job.id)
            else:
                self._lock_committed.add(job.id)
                if job.spec.lock_timeout and self._tg is not None:
                    self._tg.start_soon(self._lock_timer, rc, job.spec.lock_timeout)
        if active:
            log.info("recovered jobs", count=len(active))
        self._wake_workers(len(self._idle_workers))

    async def _recover_running(self, job: Job) -> None:
        from jobd.processes import kill_process_group

        now = self.clock()
        for step in job.steps:
            if step.pgid:
                await kill_process_group(step.pgid, grace=self.config.daemon.kill_grace)
        if job.state == S.CANCEL_REQUESTED:
            await self._transition(
                job,
                "finished",
                S.CANCELED,
                cause="canceled (completed after a daemon restart)",
                actor="recovery",
                unit=self.store.changes().release(job.id),
            )
            self.booking_index.remove_job(job.id)
            return
        overlay = ErrorOverlay("interrupted", "the run was interrupted by a daemon restart", now)
        unit = self.store.changes()
        exhausted = None
        for step in job.steps:
            if step.state not in (StepState.RUNNING, StepState.SOFT_FAILED):
                continue
            if step.attempts <= step.retries:
                unit.interrupt_step(
                    job.id, step.idx, "interrupted by a daemon restart", retry=True, at=now
                )
            else:
                exhausted = step
                unit.interrupt_step(
                    job.id,
                    step.idx,
                    "interrupted by a daemon restart; no attempts left",
                    retry=False,
                    at=now,
                )
        if exhausted is not None:
            unit.release(job.id)
            await self._transition(
                job,
                "recover",
                S.FAILED,
                cause=f"step {exhausted.name} interrupted with no attempts left",
                actor="recovery",
                unit=unit,
                error=replace(
                    overlay,
                    message=f"step {exhausted.name} was interrupted by a daemon restart in"
                    f" attempt {exhausted.attempts} of {exhausted.retries + 1}; none left",
                ),
            )
            self.booking_index.remove_job(job.id)
            return
        await self._transition(
            job,
            "recover",
            S.CONFIRMED,
            cause="interrupted by a daemon restart; resuming",
            actor="recovery",
            unit=unit,
            error=overlay,
            due_at=now,
        )
        # It held its assets when the daemon died: it gets them back before any waiter does.
        self.locks.acquire(job.id, job.spec.assets, job.spec.shared_assets, now=self.clock())
        await self._make_due(job)

    # ================================================================ reading
    async def get_job(self, job_id: int) -> Job:
        """One job with steps, reservations and history. Raises NotFound."""
        job = await self.store.load_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    async def list_jobs(
        self, f: JobFilter | None = None, limit: int = 100, cursor: int | None = None
    ) -> tuple[list[Job], int | None]:
        """Jobs matching ``f`` (all when None), newest first (by id); ``cursor`` is the id to
        continue below. Returns ``(jobs, next_cursor)``.
        Listed jobs carry no steps/history (empty lists) to keep lists cheap."""
        limit = max(1, min(limit, 1000))
        jobs = await self.store.list_jobs(f or JobFilter(), limit + 1, cursor)
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return jobs, (jobs[-1].id if more and jobs else None)

    async def job_log(self, job_id: int, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Log lines of a job with ``seq > after``: each ``{seq, at, step, level, message}``."""
        if job_id not in self.active and await self._current_state(job_id) is None:
            raise NotFound("job", job_id)
        return await self.store.job_log(job_id, after, max(1, min(limit, 10000)))

    def queue_info(self) -> dict[str, Any]:
        """``{capacity, queued: [ids in order], pending, running: [ids], waiting_for_lock: [ids],
        workers, busy_workers}``."""
        waiting = [jid for jid, rc in self.active.items() if rc.job.state == S.WAITING_FOR_LOCK]
        return {
            "capacity": self.queue.capacity,
            "queued": self.queue.ordered(),
            "pending": self._pending,
            "running": sorted(self.running),
            "waiting_for_lock": waiting,
            "workers": self.config.daemon.workers,
            "busy_workers": len(self.running),
            "accepting": self._accepting,
        }

    def locks_info(self) -> list[dict[str, Any]]:
        """Per asset: ``{asset, holders: [{job_id, mode}], waiters: [{job_id, mode, since}]}``."""
        return self.locks.snapshot()

    async def resources_info(self) -> list[dict[str, Any]]:
        """Per resource: ``{name, capacity, pools, current: [job ids], upcoming: int}``."""
        now = self.clock()
        out = []
        for name, res in sorted(self.config.resources.items()):
            pools = sorted(p.name for p in self.config.pools.values() if name in p.members)
            current, upcoming = self.booking_index.occupancy(name, now)
            out.append(
                {
                    "name": name,
                    "capacity": res.capacity,
                    "pools": pools,
                    "current": current,
                    "upcoming": upcoming,
                    "bookings": self.booking_index.count(name),
                }
            )
        return out

    async def bookings(self, start: float | None, end: float | None) -> list[dict[str, Any]]:
        """Reservations overlapping ``[start, end]``: ``{job_id, job_name, state, resource,
        pool, start, end, start_at, end_at}``; ``start_at``/``end_at`` are the job's window,
        so ``start_at - start`` is its preroll and ``end - end_at`` its postroll."""
        reservations = self.booking_index.between(start, end)
        jobs = await self.store.job_windows(sorted({r.job_id for r in reservations}))
        unknown = ("?", None, None, None)
        out = []
        for r in reservations:
            name, state, start_at, end_at = jobs.get(r.job_id, unknown)
            out.append(
                {
                    "job_id": r.job_id,
                    "job_name": name,
                    "state": str(state),
                    "resource": r.resource,
                    "pool": r.pool,
                    "start": r.start,
                    "end": r.end,
                    "start_at": start_at,
                    "end_at": end_at,
                }
            )
        return out

    async def schedules_info(self) -> list[dict[str, Any]]:
        """Per schedule: next and last firing, missed and skipped counts, recent events."""
        return await self.schedules.info()

    def plugins_info(self) -> dict[str, Any]:
        """``{plugins: [{name, file, actions, error}], actions: [{name, plugin, description}]}``."""
        return self.plugins.describe()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[JobEvent]]:
        """Every committed event from now on, for the SSE stream; a slow reader is dropped."""
        send, receive = anyio.create_memory_object_stream[JobEvent](10_000)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    # ================================================================ reload
    async def reload(self, config: Config) -> list[str]:
        """Swap in a new, already-validated config; returns warnings (e.g. jobs whose resources
        vanished, which now carry an error overlay)."""
        warnings = []
        if (
            config.daemon.workers != self.config.daemon.workers
            or config.daemon.run_queue_size != self.config.daemon.run_queue_size
            or config.daemon.state_dir != self.config.daemon.state_dir
        ):
            warnings.append("daemon.workers, run_queue_size and state_dir take effect on restart")
        enabled = {s.name for s in self.config.schedules if s.enabled}
        self.config = replace(
            config,
            daemon=replace(
                config.daemon,
                workers=self.config.daemon.workers,
                run_queue_size=self.config.daemon.run_queue_size,
                state_dir=self.config.daemon.state_dir,
            ),
        )
        warnings += await self._revalidate_bookings("reload")
        await self.schedules.reload(enabled)
        if warnings:
            log.warning("reload affected jobs", warnings=warnings)
        return warnings

    async def _revalidate_bookings(self, actor: str) -> list[str]:
        """Check the reservations against ``self.config`` (reload, start-up): the overlay
        ``booking-invalid`` on the jobs it no longer allows, cleared on the others."""
        now = self.clock()
        problems = self.booking_index.reconfigure(self.config.resources, self.config.pools)
        affected: dict[int, str] = {}
        for job_id, problem in problems:  # one overlay per job, naming every problem
            affected[job_id] = f"{affected[job_id]}; {problem}" if job_id in affected else problem
        warnings = []
        for job_id, problem in affected.items():
            overlay = ErrorOverlay("booking-invalid", problem, now)
            await self.store.commit(self.store.changes().set_error(job_id, overlay, now))
            self._emit(
                JobEvent(job_id, "error", now, cause=problem, actor=actor, data=overlay.to_dict())
            )
            warnings.append(f"job {job_id}: {problem}")
        await self._clear_booking_overlays(set(affected), now, actor)
        return warnings

    async def _clear_booking_overlays(self, still_bad: set[int], now: float, actor: str) -> None:
        for job_id in await self.store.jobs_with_error("booking-invalid"):
            if job_id in still_bad:
                continue
            await self.store.commit(self.store.changes().set_error(job_id, None, now))
            self._emit(
                JobEvent(job_id, "error", now, cause="booking valid again", actor=actor, data=None)
            )


def _with_end_script_problem(result: RunResult, problem: str | None, now: float) -> RunResult:
    """The outcome after the end script: its failure sets the overlay ``end-script-failed``,
    unless the run already failed for a reason of its own (a step, the start script, the
    timeout): that reason stays the job's, and the end script's failure is added to it."""
    if problem is None:
        return result
    if result.error is not None and result.outcome in (S.FAILED, S.TIMED_OUT):
        first = result.error
        return replace(
            result,
            error=ErrorOverlay(
                first.code, f"{first.message}; the end script failed too: {problem}", first.at
            ),
        )
    return replace(result, error=ErrorOverlay("end-script-failed", problem, now))


@dataclass(slots=True)
class BatchOutcome:
    """What :meth:`Engine.operate_many` did: ids done and refused, in the order asked."""

    done: list[int]
    refused: list[tuple[int, JobdError]]
    #: ``resubmit``: the new job of each job done, in the same order.
    created: list[int]

    @classmethod
    def of(cls, ids: list[int], outcome: Mapping[int, JobdError | Job | None]) -> BatchOutcome:
        done, refused, created = [], [], []
        for job_id in ids:
            result = outcome[job_id]
            if isinstance(result, JobdError):
                refused.append((job_id, result))
                continue
            done.append(job_id)
            if isinstance(result, Job):
                created.append(result.id)
        return cls(done, refused, created)


@dataclass(slots=True)
class _Intake:
    """A submission that passed validation and holds its bookings, not yet written."""

    job: Job
    now: float
    actor: str
    #: ``(from, to, cause)`` rows to write: submitted, then due if it is due at once.
    history: list[tuple[JobState | None, JobState, str]]


def replace_job(job: Job, **changes: Any) -> Job:
    new = Job(
        id=job.id,
        spec=job.spec,
        state=job.state,
        created_at=job.created_at,
        updated_at=job.updated_at,
        error=job.error,
        due_at=job.due_at,
    )
    for key, value in changes.items():
        setattr(new, key, value)
    return new
