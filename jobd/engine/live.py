"""Live windows (SPEC §3.7): after its steps a booking stays ``running`` with its locks and
reservations until ``end_at + postroll``, on one timer (:class:`jobd.run.windows.LiveWindows`),
holding no worker. When the window ends its end script runs on a worker (taken as a
``window-end``) and the outcome is recorded as after any run.

Stop ends an open window at once; cancel ends it ``canceled``; pause lets go of the
assets and the window (the reservations stay) and resume opens it again. Nothing here
is durable: a ``running`` job with a window and every step completed is in its window,
and recovery opens it again (:meth:`LiveWindowPart.reopen`).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from jobd.config import WorkflowConfig
from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState, StepState
from jobd.engine.context import Context
from jobd.engine.lineup import Lineup
from jobd.engine.ports import Handoff, Wakeup
from jobd.engine.transitions import Transitions
from jobd.run.runner import CANCEL, RunControl, RunResult
from jobd.run.windows import LiveWindows

S = JobState


class Finisher(Protocol):
    """What ends a run (:class:`~.workers.Workers`)."""

    running: set[int]

    def finish(self, rc: RunControl, result: RunResult) -> None:
        """Free the job's assets, then record its outcome in a task of its own."""

    def settled(self, job_id: int) -> None: ...

    async def end_script(
        self, job: Job, workflow: WorkflowConfig | None, result: RunResult
    ) -> RunResult: ...

    def idle_now(self) -> None:
        """The job left the running set: wake a drain waiting for no job to run."""


class LiveWindowPart:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        handoff: Handoff,
        wakeup: Wakeup,
        finisher: Finisher,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._handoff = handoff
        self._wakeup = wakeup
        self._finisher = finisher
        self.windows = LiveWindows(self._ended, clock=ctx.clock)
        #: Ended windows whose end script waits for a worker.
        self.ends: deque[int] = deque()

    def open(self, rc: RunControl) -> None:
        """Steps done, window ahead: the job stays ``running`` with its assets and
        reservations, on the window timer; its worker goes back to the queue."""
        job = rc.job
        rc.scope = None  # the run's scope is over: cancel and pause act on the window
        self.windows.open(job.id, window_end(job.spec))
        self._finisher.running.discard(job.id)
        self._finisher.idle_now()

    def _ended(self, job_ids: list[int]) -> None:
        """The window timer's callback: each ended window's end script goes to a worker;
        a window without an end script ends here, needing none."""
        for job_id in job_ids:
            rc = self._lineup.get(job_id)
            if rc is None:
                continue
            workflow = self._ctx.config.workflows.get(rc.job.spec.workflow)
            if workflow is None or workflow.end_script is None:
                self._finisher.finish(rc, window_outcome(rc))
            else:
                self.ends.append(job_id)
                self._wakeup.wake_one()

    async def end(self, rc: RunControl) -> None:
        """On a worker: the end script of an ended (or stopped, or canceled) live window,
        then the outcome, as after the steps."""
        job = rc.job
        finisher = self._finisher
        finisher.running.add(job.id)
        try:
            workflow = self._ctx.config.workflows.get(job.spec.workflow)
            result = await finisher.end_script(job, workflow, window_outcome(rc))
        except BaseException:
            self._handoff.release(job.id)
            finisher.settled(job.id)
            raise
        finisher.finish(rc, result)

    def end_now(self, rc: RunControl) -> bool:
        """Stop or cancel: end the job's open live window at once; False if none is open
        (its steps still run, or its end is already being handled)."""
        if not self.windows.close(rc.job.id):
            return False
        self._ended([rc.job.id])
        return True

    def close(self, job_id: int) -> bool:
        return self.windows.close(job_id)

    async def pause(self, rc: RunControl, actor: str) -> None:
        """Pause in the live window (closed by the caller): ``paused``, the assets and the
        window let go (the reservations stay); resume opens it again, without the start
        script."""
        job = rc.job
        end = window_end(job.spec)
        try:
            await self._transitions.apply(
                job, "pause", S.PAUSED, cause="paused in its live window", actor=actor
            )
        except BaseException:
            self.windows.open(job.id, end)
            raise
        self._handoff.release(job.id)
        self._lineup.settle(job.id)

    def reopen(self, job: Job) -> None:
        """Recovery of a job that was in its live window: back on the timer with its assets
        (taken before any waiter's), with no transition and no worker."""
        self._lineup.hold(job).started = True
        self._handoff.restore_holder(job)
        self.windows.open(job.id, window_end(job.spec))


def in_live_window(job: Job) -> bool:
    """A ``running`` job with a window whose steps are all done is in its live window."""
    return job.spec.end_at is not None and all(
        step.state == StepState.COMPLETED for step in job.steps
    )


def window_end(spec: JobSpec) -> float:
    """When a job's live window ends: ``end_at + postroll``."""
    assert spec.end_at is not None
    return spec.end_at + spec.postroll


def window_outcome(rc: RunControl) -> RunResult:
    """The outcome of a live window that ended: canceled if an operator canceled it."""
    if rc.stop_reason == CANCEL:
        return RunResult(S.CANCELED, "canceled by an operator")
    return RunResult(S.COMPLETED, "all steps completed")
