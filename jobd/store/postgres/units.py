"""The PostgreSQL unit of work: the contract's intents as statements for ``jobd_apply``
(``sql/schema.sql``), the function that holds every write of this backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobd.core.models import ErrorOverlay, Job, JobSpec, Reservation, Step
from jobd.core.states import JobState
from jobd.store.assetlocks import LockStart
from jobd.store.codec import (
    error_to_json,
    job_row,
    redefine_row,
    step_record_row,
    step_row,
)
from jobd.store.contract import KEEP, Changes


class PgUnit(Changes):
    """The unit's statements as ``[op, arg, ...]`` lists for ``jobd_apply`` (the schema's
    function that holds every write statement); when ``guarded``, the first one is the guard
    and the unit is skipped whole if it matches no row."""

    __slots__ = ("guarded", "locking", "statements")

    def __init__(self) -> None:
        self.statements: list[list[Any]] = []
        self.guarded = False
        #: With lock statements: the assets, jobs and nodes whose advisory locks the batch
        #: must take first (``jobd_apply_locked``); None without (most units).
        self.locking: tuple[list[str], list[int], list[str]] | None = None

    def add(self, op: str, *args: Any) -> PgUnit:
        self.statements.append([op, *args])
        return self

    def _guard_first(self, op: str, *args: Any) -> PgUnit:
        if self.guarded:
            raise ValueError("a unit of work carries at most one guarded intent")
        self.statements.insert(0, [op, *args])
        self.guarded = True
        return self

    # ---------------------------------------------------------------- jobs
    def insert_job(self, job: Job) -> PgUnit:
        params = job_row(job)
        return self.add("insert_job", *params)

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
    ) -> PgUnit:
        frm, to = str(from_state), str(to_state)
        set_error, set_due = error is not KEEP, due_at is not KEEP
        err = error_to_json(error) if set_error else None
        due = due_at if set_due else None
        self._guard_first("transition", to, at, set_error, err, set_due, due, job_id, frm)
        return self.add("history", job_id, at, frm, to, cause, actor)

    def record_history(
        self,
        job_id: int,
        at: float,
        from_state: JobState | None,
        to_state: JobState | None,
        cause: str,
        actor: str,
    ) -> PgUnit:
        frm = None if from_state is None else str(from_state)
        to = None if to_state is None else str(to_state)
        return self.add("history", job_id, at, frm, to, cause, actor)

    def redefine_job(
        self, job_id: int, spec: JobSpec, due_at: float, steps: Sequence[Step]
    ) -> PgUnit:
        self.add("delete_steps", job_id)
        for step in steps:
            self.insert_step(step)
        return self.add("redefine_job", *redefine_row(job_id, spec, due_at))

    def delete_job(self, job_id: int, state: JobState) -> PgUnit:
        self._guard_first("delete_job", job_id, str(state))
        return self.add("delete_steps", job_id).add("release", job_id).add("delete_log", job_id)

    def set_error(
        self, job_id: int, error: ErrorOverlay | None, at: float, *, only_if_clear: bool = False
    ) -> PgUnit:
        op = "set_error_if_clear" if only_if_clear else "set_error"
        return self.add(op, error_to_json(error), at, job_id)

    def set_run_started(self, job_id: int, at: float | None) -> PgUnit:
        return self.add("set_run_started", at, job_id)

    def set_progress(self, job_id: int, progress: float, message: str | None) -> PgUnit:
        return self.add("set_progress", progress, message, job_id)

    # ---------------------------------------------------------------- steps
    def insert_step(self, step: Step) -> PgUnit:
        return self.add("insert_step", *step_row(step))

    def record_step(self, step: Step) -> PgUnit:
        return self.add("record_step", *step_record_row(step))

    def set_step_pgid(self, job_id: int, idx: int, pgid: int | None) -> PgUnit:
        return self.add("set_step_pgid", pgid, job_id, idx)

    def reset_step(self, job_id: int, idx: int) -> PgUnit:
        return self.add("reset_step", job_id, idx)

    def interrupt_step(
        self, job_id: int, idx: int, error: str, *, retry: bool, at: float
    ) -> PgUnit:
        if retry:
            return self.add("requeue_step", error, job_id, idx)
        return self.add("fail_step", error, at, job_id, idx)

    # ---------------------------------------------------------------- bookings
    def reserve(self, reservation: Reservation) -> PgUnit:
        r = reservation
        return self.add("reserve", r.job_id, r.resource, r.start, r.end, r.pool)

    def release(self, job_id: int) -> PgUnit:
        return self.add("release", job_id)

    # ---------------------------------------------------------------- logs, schedules
    def append_log(
        self, job_id: int, at: float, step: str | None, level: str, message: str
    ) -> PgUnit:
        return self.add("log", job_id, at, step, level, message)

    def record_firing(
        self,
        schedule: str,
        fire_time: float,
        kind: str | None,
        *,
        job_id: int | None = None,
        reason: str | None = None,
        at: float = 0.0,
    ) -> PgUnit:
        self.add("ensure_schedule", schedule)
        if kind == "fired":
            self.add("schedule_fired", fire_time, job_id, schedule)
        elif kind is None:
            self.add("schedule_clock", fire_time, schedule)
        else:
            self.add(
                "schedule_missed" if kind == "missed" else "schedule_skipped", fire_time, schedule
            )
        if kind is not None:
            self.add("schedule_event", schedule, at, fire_time, kind, job_id, reason)
        return self

    def set_schedule_paused(
        self, schedule: str, paused_at: float | None, at: float, actor: str
    ) -> PgUnit:
        kind = "paused" if paused_at is not None else "resumed"
        self.add("ensure_schedule", schedule).add("schedule_paused", paused_at, schedule)
        return self.add("schedule_event", schedule, at, at, kind, None, f"{kind} by {actor}")

    # ---------------------------------------------------------------- asset locks
    # The intents of jobd.store.postgres.locks.PgAssetLocks (the contract's AssetLocks).
    def _locks(self) -> tuple[list[str], list[int], list[str]]:
        if self.locking is None:
            self.locking = ([], [], [])
        return self.locking

    def lock_request(
        self,
        job_id: int,
        node: str,
        exclusive: Sequence[str],
        shared: Sequence[str],
        at: float,
        start: LockStart | None = None,
    ) -> PgUnit:
        assets, jobs, _ = self._locks()
        assets += (*exclusive, *shared)
        jobs.append(job_id)
        step, attempts = (None, None) if start is None else (start.step, start.attempts)
        return self.add(
            "lock_request",
            job_id,
            node,
            list(exclusive),
            list(shared),
            at,
            start is not None,
            step,
            attempts,
        )

    def lock_release(self, job_id: int, node: str, op: str = "lock_release") -> PgUnit:
        """``op``: ``lock_release``, ``lock_withdraw`` or ``lock_unstart`` (``sql/migrate-13``)."""
        self._locks()[1].append(job_id)
        return self.add(op, job_id, node)

    def lock_regrant(self, job_id: int) -> PgUnit:
        self._locks()[1].append(job_id)
        return self.add("lock_regrant", job_id)

    def lock_release_node(self, node: str) -> PgUnit:
        """Takeover's intent (``jobd_locks_release_node``): every request of ``node``."""
        self._locks()[2].append(node)
        return self.add("lock_release_node", node)
