"""What the store's reads answer with and select by: records of the contract
(:mod:`.contract`) that are not units of work, kept apart so that the contract module
holds the methods and their promises."""

from __future__ import annotations

from dataclasses import dataclass

from jobd.core.models import Job
from jobd.core.states import JobState


@dataclass(slots=True)
class DuePlan:
    """What the due timer does next; see :meth:`.contract.Store.load_due`."""

    #: Confirmed jobs due by the time asked for, oldest due first, with steps and
    #: reservations.
    due: list[Job]
    #: Draft or tentative jobs without an error overlay whose start has passed.
    unconfirmed_started: list[int]
    #: When to look again: the next due time or unconfirmed start after the time asked for.
    next_wake: float | None


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
