"""Job and step states, and the one transition table every change is checked against.

The enum values are exactly what the database stores and what the API returns
(SPEC §2). Nothing here does I/O: the engine asks :func:`check_transition`
before it writes, and the store repeats the rule in SQL (``WHERE state IN``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from jobd.core.errors import InvalidTransition


class JobState(StrEnum):
    DRAFT = "draft"
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    PENDING = "pending"
    QUEUED = "queued"
    WAITING_FOR_LOCK = "waiting-for-lock"
    RUNNING = "running"
    CANCEL_REQUESTED = "cancel-requested"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    CANCELED = "canceled"
    READY_FOR_INVOICE = "ready-for-invoice"
    INVOICED = "invoiced"


class StepState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    SOFT_FAILED = "soft-failed"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    CANCELED = "canceled"


S = JobState

#: States in which a job holds its reservations (SPEC §2 table).
HOLDS_RESERVATION = frozenset(
    {
        S.TENTATIVE,
        S.CONFIRMED,
        S.PENDING,
        S.QUEUED,
        S.WAITING_FOR_LOCK,
        S.RUNNING,
        S.CANCEL_REQUESTED,
        S.PAUSED,
    }
)
#: A job in one of these states is being executed or is about to be (the engine tracks it).
ACTIVE = frozenset({S.QUEUED, S.WAITING_FOR_LOCK, S.RUNNING, S.CANCEL_REQUESTED})
#: Outcomes of a run.
OUTCOMES = frozenset({S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELED})
#: States that never run again.
NEVER_RUN_AGAIN = frozenset({S.COMPLETED, S.CANCELED, S.READY_FOR_INVOICE, S.INVOICED})
EDITABLE = frozenset({S.DRAFT, S.TENTATIVE, S.CONFIRMED})
STEP_FINAL = frozenset(
    {StepState.COMPLETED, StepState.FAILED, StepState.TIMED_OUT, StepState.CANCELED}
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One operation: the states it may start from and the states it may lead to."""

    sources: frozenset[JobState]
    targets: frozenset[JobState]
    #: True for operations a person asks for (API/CLI); False for the scheduler's own.
    public: bool = True


def _rule(sources: set[JobState], *targets: JobState, public: bool = True) -> Rule:
    return Rule(frozenset(sources), frozenset(targets), public)


_ALL = set(JobState)

#: The transition table of SPEC §2. ``submit`` has no source state (``None``).
TRANSITIONS: dict[str, Rule] = {
    "submit": _rule(set(), S.DRAFT, S.TENTATIVE, S.CONFIRMED),
    "tentative": _rule({S.DRAFT}, S.TENTATIVE),
    "confirm": _rule({S.DRAFT, S.TENTATIVE}, S.CONFIRMED),
    "unconfirm": _rule({S.CONFIRMED}, S.TENTATIVE),
    "edit": _rule(set(EDITABLE), S.DRAFT, S.TENTATIVE, S.CONFIRMED),
    "due": _rule({S.CONFIRMED}, S.QUEUED, S.PENDING, public=False),
    "admitted": _rule({S.PENDING}, S.QUEUED, public=False),
    "picked": _rule({S.QUEUED}, S.RUNNING, S.WAITING_FOR_LOCK, public=False),
    "lock-granted": _rule({S.WAITING_FOR_LOCK}, S.RUNNING, public=False),
    # A lock wait that times out fails the job (error overlay ``lock-timeout``).
    "lock-timeout": _rule({S.WAITING_FOR_LOCK}, S.FAILED, public=False),
    "finished": _rule(
        {S.RUNNING, S.CANCEL_REQUESTED},
        S.COMPLETED,
        S.FAILED,
        S.TIMED_OUT,
        S.CANCELED,
        public=False,
    ),
    # Recovery puts a job that was executing when the daemon died back in line.
    "recover": _rule(
        {S.QUEUED, S.WAITING_FOR_LOCK, S.RUNNING, S.CANCEL_REQUESTED},
        S.CONFIRMED,
        S.FAILED,
        S.CANCELED,
        public=False,
    ),
    "cancel": _rule(
        _ALL - {S.COMPLETED, S.CANCELED, S.READY_FOR_INVOICE, S.INVOICED},
        S.CANCELED,
        S.CANCEL_REQUESTED,
    ),
    "stop": _rule({S.RUNNING}, S.RUNNING, S.COMPLETED),
    "pause": _rule({S.CONFIRMED, S.PENDING, S.QUEUED, S.WAITING_FOR_LOCK, S.RUNNING}, S.PAUSED),
    "resume": _rule({S.PAUSED}, S.CONFIRMED),
    "retry": _rule({S.FAILED, S.TIMED_OUT}, S.CONFIRMED),
    "restart": _rule({S.FAILED, S.TIMED_OUT, S.PAUSED}, S.CONFIRMED),
    "resubmit": _rule(_ALL, *JobState),
    "invoice-ready": _rule({S.COMPLETED, S.CANCELED}, S.READY_FOR_INVOICE),
    "invoiced": _rule({S.READY_FOR_INVOICE}, S.INVOICED),
    "delete": _rule({S.DRAFT, S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELED}),
}

#: Operations a person may ask for through the API (``POST /v1/jobs/{id}/{operation}``).
PUBLIC_OPERATIONS = tuple(
    name for name, rule in TRANSITIONS.items() if rule.public and name not in {"submit", "edit"}
)


def allowed_operations(state: JobState) -> list[str]:
    """The public operations that may start from ``state``, in table order."""
    return [
        name
        for name, rule in TRANSITIONS.items()
        if rule.public and name != "submit" and state in rule.sources
    ]


def check_transition(operation: str, current: JobState, target: JobState | None = None) -> None:
    """Raise :class:`InvalidTransition` unless ``operation`` may go from ``current`` to ``target``.

    ``target`` is ``None`` for operations that do not change the state of this
    job (``resubmit``, ``delete``).
    """
    rule = TRANSITIONS.get(operation)
    if rule is None:
        raise InvalidTransition(operation, current, allowed_operations(current), unknown=True)
    if current not in rule.sources:
        raise InvalidTransition(operation, current, allowed_operations(current))
    if target is not None and rule.targets and target not in rule.targets:
        raise InvalidTransition(operation, current, allowed_operations(current), target=target)
