"""The jobs the engine holds in memory: one :class:`RunControl` per queued, waiting or
running job, and who waits for one of them to leave."""

from __future__ import annotations

import anyio

from jobd.core.errors import NotFound
from jobd.core.models import Job
from jobd.run.runner import RunControl
from jobd.store import Store


class Lineup:
    def __init__(self) -> None:
        self.active: dict[int, RunControl] = {}
        self._inactive_waiters: dict[int, list[anyio.Event]] = {}
        #: ``get(job_id)``: its run control, or None (the dict's own, no call in between).
        self.get = self.active.get

    def hold(self, job: Job) -> RunControl:
        """Hold ``job`` (queued or about to be): its run control from now on."""
        rc = self.active[job.id] = RunControl(job)
        return rc

    def __contains__(self, job_id: int) -> bool:
        return job_id in self.active

    def drop(self, job_id: int) -> None:
        """Forget a job that left the line before it ran (no one waits on that)."""
        self.active.pop(job_id, None)

    def settle(self, job_id: int) -> None:
        """The job's run is over: forget it and wake whoever waits for that."""
        self.active.pop(job_id, None)
        for event in self._inactive_waiters.pop(job_id, []):
            event.set()

    async def wait_until_inactive(self, job_id: int) -> None:
        while job_id in self.active:
            event = anyio.Event()
            self._inactive_waiters.setdefault(job_id, []).append(event)
            await event.wait()


async def load_live(lineup: Lineup, store: Store, job_id: int) -> Job:
    """The job as the engine holds it when it is in the line (the live object operations
    change), else as stored (steps and reservations, no history). Raises NotFound."""
    rc = lineup.get(job_id)
    if rc is not None:
        return rc.job
    job = await store.load_job(job_id, full=False)
    if job is None:
        raise NotFound("job", job_id)
    return job
