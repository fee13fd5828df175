"""Records that move between the store, the engine and the API.

Times are POSIX seconds (``float``, UTC) everywhere inside jobd; the API and
the CLI turn them into ISO 8601 with a zone at the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from jobd.core.states import JobState, StepState

#: How a record's ``to_dict`` writes a time (or ``None``): the API passes its ISO 8601
#: formatter, so that a job is built once with its times as the API shows them.
TimeOut = Callable[[float | None], Any]


def _as_is(value: float | None) -> Any:
    return value


class OverlayCode(StrEnum):
    """Every ``code`` an error overlay may carry, listed (with when each is set) in
    docs/api.md; ``tests/test_overlays.py`` keeps the two in step."""

    STEP_FAILED = "step-failed"
    STEP_TIMED_OUT = "step-timed-out"
    TIMEOUT = "timeout"
    START_SCRIPT_FAILED = "start-script-failed"
    LOCK_TIMEOUT = "lock-timeout"
    INTERRUPTED = "interrupted"
    UNKNOWN_WORKFLOW = "unknown-workflow"
    END_SCRIPT_FAILED = "end-script-failed"
    NOT_CONFIRMED = "not-confirmed"
    BOOKING_INVALID = "booking-invalid"


@dataclass(frozen=True, slots=True)
class ErrorOverlay:
    """The ``error`` overlay a job may carry while keeping its state (SPEC §2)."""

    code: str
    message: str
    at: float

    def to_dict(self, time: TimeOut = _as_is) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at": time(self.at)}


#: Bounds on what a job may ask for, one definition for the API and the engine: a priority,
#: a year for a duration, times before the year 9000 (so that every stored time can still be
#: shown as a date, and arithmetic on it stays finite).
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_DURATION = 366 * 86400.0
LATEST_TIME = 221845392000.0  # 9000-01-01T00:00:00Z
#: ``metadata`` of a JobSpec field that PATCH may not change.
_FIXED = {"editable": False}


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a submission asks for. Validated by the engine against the config.

    The one definition of the spec's fields: the API's bodies, the store's encoding
    (:mod:`jobd.store.codec`) and ``edit`` are derived from it (:data:`SPEC_FIELDS`)."""

    workflow: str = field(metadata=_FIXED)
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    assets: tuple[str, ...] = ()
    shared_assets: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    start_at: float | None = None
    end_at: float | None = None
    preroll: float = 0.0
    postroll: float = 0.0
    priority: int = 0
    timeout: float | None = None
    lock_timeout: float | None = None
    state: JobState = field(default=JobState.CONFIRMED, metadata=_FIXED)
    schedule: str | None = field(default=None, metadata=_FIXED)

    @property
    def due_at(self) -> float | None:
        """When a confirmed job becomes due: ``start_at - preroll``, or ``None`` for at once."""
        return None if self.start_at is None else self.start_at - self.preroll

    @property
    def window(self) -> tuple[float, float] | None:
        """The reserved span ``[start_at - preroll, end_at + postroll]``, if the job has one."""
        if self.start_at is None:
            return None
        end = self.end_at if self.end_at is not None else self.start_at
        return (self.start_at - self.preroll, end + self.postroll)


@dataclass(frozen=True, slots=True)
class SpecFields:
    """The JobSpec's fields by kind, derived from the dataclass (see :data:`SPEC_FIELDS`)."""

    #: Every field, in declaration order.
    names: tuple[str, ...]
    #: Fields PATCH may change.
    editable: frozenset[str]
    #: Fields whose default is None (an edit may set them to null).
    nullable: frozenset[str]
    #: Fields that are tuples of names (lists in JSON).
    lists: tuple[str, ...]
    #: Fields that are times (ISO 8601 in the API, POSIX seconds inside).
    times: tuple[str, ...]


def _spec_fields() -> SpecFields:
    specs = fields(JobSpec)
    return SpecFields(
        names=tuple(f.name for f in specs),
        editable=frozenset(f.name for f in specs if f.metadata.get("editable", True)),
        nullable=frozenset(f.name for f in specs if f.default is None),
        lists=tuple(f.name for f in specs if f.default == ()),
        times=tuple(f.name for f in specs if f.name.endswith("_at")),
    )


SPEC_FIELDS = _spec_fields()


@dataclass(slots=True)
class Step:
    job_id: int
    idx: int
    name: str
    action: str
    params: dict[str, Any]
    state: StepState = StepState.QUEUED
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 5.0
    isolation: str = "inline"
    pgid: int | None = None

    def copy(self) -> Step:
        """A shallow copy (``copy.copy`` takes the slow generic path for slotted classes)."""
        return Step(
            self.job_id,
            self.idx,
            self.name,
            self.action,
            self.params,
            self.state,
            self.attempts,
            self.started_at,
            self.ended_at,
            self.outputs,
            self.error,
            self.timeout,
            self.retries,
            self.retry_backoff,
            self.isolation,
            self.pgid,
        )

    def to_dict(self, time: TimeOut = _as_is) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "state": str(self.state),
            "attempts": self.attempts,
            "started_at": time(self.started_at),
            "ended_at": time(self.ended_at),
            "outputs": self.outputs,
            "error": self.error,
            "timeout": self.timeout,
            "retries": self.retries,
        }


@dataclass(frozen=True, slots=True)
class Reservation:
    job_id: int
    resource: str
    start: float
    end: float
    pool: str | None = None

    def to_dict(self, time: TimeOut = _as_is) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "resource": self.resource,
            "start": time(self.start),
            "end": time(self.end),
            "pool": self.pool,
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: float
    from_state: JobState | None
    to_state: JobState | None
    cause: str
    actor: str

    def to_dict(self, time: TimeOut = _as_is) -> dict[str, Any]:
        return {
            "at": time(self.at),
            "from": None if self.from_state is None else str(self.from_state),
            "to": None if self.to_state is None else str(self.to_state),
            "cause": self.cause,
            "actor": self.actor,
        }


@dataclass(slots=True)
class Job:
    id: int
    spec: JobSpec
    state: JobState
    created_at: float
    updated_at: float
    error: ErrorOverlay | None = None
    progress: float | None = None
    progress_message: str | None = None
    #: When the job entered its current queue position (due time, or admission time).
    due_at: float | None = None
    #: When the current run's start script ran (None: not yet, or no run). A run has one
    #: start script: pause/resume and a daemon restart continue the run without it.
    run_started_at: float | None = None
    steps: list[Step] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name or f"{self.spec.workflow}-{self.id}"

    def to_dict(self, *, detail: bool = True, time: TimeOut = _as_is) -> dict[str, Any]:
        """The job as the API returns it, each time written by ``time`` (by default as
        POSIX seconds: the API passes its ISO 8601 formatter).

        ``detail=False`` is a list's row: it leaves out ``steps``,
        ``reservations`` and ``history``, which a list does not load (an empty
        list there would look like data)."""
        s = self.spec
        summary: dict[str, Any] = {
            "id": self.id,
            "name": s.name or f"{s.workflow}-{self.id}",  # self.name, without the call
            "workflow": s.workflow,
            "state": str(self.state),
            "error": None if self.error is None else self.error.to_dict(time),
            "priority": s.priority,
            "params": s.params,
            "assets": list(s.assets),
            "shared_assets": list(s.shared_assets),
            "resources": list(s.resources),
            "pools": list(s.pools),
            "start_at": time(s.start_at),
            "end_at": time(s.end_at),
            "preroll": s.preroll,
            "postroll": s.postroll,
            "timeout": s.timeout,
            "lock_timeout": s.lock_timeout,
            "schedule": s.schedule,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "created_at": time(self.created_at),
            "updated_at": time(self.updated_at),
        }
        if detail:
            summary["steps"] = [step.to_dict(time) for step in self.steps]
            summary["reservations"] = [r.to_dict(time) for r in self.reservations]
            summary["history"] = [h.to_dict(time) for h in self.history]
        return summary
