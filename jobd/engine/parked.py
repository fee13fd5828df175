"""Parked: the jobs this node put in ``pending``, kept as placed, so that admission takes them
without reading them back from the store.

The store stays the truth (SPEC §3: pending jobs are the database's). Admission asks it
which jobs are pending, in order, and takes from here only the jobs it names; any change
of a job through this node's :class:`~.transitions.Transitions` (a state, an overlay)
drops it from here first, so that a job taken is the job the store holds. At most
``limit`` jobs (:data:`PARKED_PER_PLACE` times ``run_queue_size``, never more than
:data:`PARKED_MAX`: memory stays bounded whatever the backlog; the others are read back,
as every pending job was before); none on a cluster, where other nodes change pending
jobs without this node knowing.
"""

from __future__ import annotations

from jobd.core.models import Job

#: Jobs parked at most, per place in the run queue (``run_queue_size``, which bounds the
#: jobs held in memory otherwise): 10,000 at the default 1,000, ~9 MB of no-op jobs (~0.9 KB
#: each with its step).
PARKED_PER_PLACE = 10

#: And never more than this (~90 MB), whatever ``run_queue_size`` an installation sets.
PARKED_MAX = 100_000


class Parked:
    __slots__ = ("_jobs", "limit")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self._jobs: dict[int, Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def park(self, job: Job) -> None:
        """Keep ``job``, just committed as ``pending`` (unless ``limit`` are kept already:
        the first parked are the first admitted, so none is dropped for a newer one)."""
        if len(self._jobs) < self.limit:
            self._jobs[job.id] = job

    def take(self, job_id: int) -> Job | None:
        """The job as parked (and no longer kept), or None if it is not."""
        return self._jobs.pop(job_id, None)

    def forget(self, job_id: int) -> None:
        """The job is changing: it is read from the store from now on."""
        if self._jobs:
            self._jobs.pop(job_id, None)
