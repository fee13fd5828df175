"""Workers: take a job (a grant first, then the run queue), pick it, run it, record the outcome.

A pick takes the job's assets (or waits for them: :mod:`.handoff`) and writes
``running`` together with the first step's first attempt when nothing runs
before it. The run is :class:`~jobd.run.runner.Runner`'s; the outcome is written
after the assets and the worker are free, with no task waiting for it
(``Transitions.apply_soon``): what follows its commit runs in a callback.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import anyio
import structlog

from jobd.config import WorkflowConfig
from jobd.core.errors import JobdError
from jobd.core.models import ErrorOverlay, Job, OverlayCode, Step
from jobd.core.states import JobState, StepState
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.engine.lineup import Lineup
from jobd.engine.live import LiveWindowPart, window_end, window_outcome
from jobd.engine.ports import Handoff, Line
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex
from jobd.run.runner import RunControl, Runner, RunResult
from jobd.store import Changes
from jobd.store.contract import LockStart

S = JobState
log = structlog.get_logger("jobd.engine")
#: What a worker takes (see Workers._take): a queued job to pick, a job whose assets were
#: handed to it, or a live window that ended and has an end script to run.
_PICK, _GRANTED, _WINDOW_END = "pick", "granted", "window-end"


class IdleWorkers:
    """Idle workers, each waiting on its own future: one is woken per job to take, not all
    of them (64 workers woken for every submission was 6 % of the loop)."""

    def __init__(self) -> None:
        self._idle: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(idle)
        await idle

    def wake_one(self) -> None:
        self.wake(1)

    def wake_all(self) -> None:
        self.wake(len(self._idle))

    def wake(self, n: int) -> None:
        while n > 0 and self._idle:
            idle = self._idle.popleft()
            if not idle.done():  # a worker cancelled at shutdown leaves a cancelled future
                idle.set_result(None)
                n -= 1


class Workers:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        fanout: Fanout,
        handoff: Handoff,
        line: Line,
        idle: IdleWorkers,
        bookings: BookingIndex,
        runner: Runner,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._fanout = fanout
        self._handoff = handoff
        self._line = line
        self._idle_workers = idle
        self._bookings = bookings
        self._runner = runner
        #: Jobs whose run is in progress (steps, window, end script), until their outcome
        #: has committed (or failed to).
        self.running: set[int] = set()
        #: Outcome writes handed to the store whose commit has not answered yet.
        self.concluding = 0
        self._idle = asyncio.Event()
        #: The live windows that follow the steps of a booking (their own part).
        self.live = LiveWindowPart(ctx, lineup, transitions, handoff, idle, self)

    async def wait_idle(self) -> None:
        """Wait until no job runs, or half a second (the caller re-checks)."""
        self._idle.clear()
        with anyio.move_on_after(0.5):
            await self._idle.wait()

    async def worker(self) -> None:
        while True:
            job_id, kind = await self._take()
            rc = self._lineup.get(job_id)
            if rc is None:
                continue
            try:
                if kind is _WINDOW_END:
                    await self.live.end(rc)
                else:
                    await self._pick(rc, kind is _GRANTED)
            except JobdError as exc:
                # Canceled, deleted, or its submission failed to commit, while being picked.
                log.info("job left the line before it ran", job_id=job_id, reason=str(exc))
                self._handoff.release_if_involved(job_id)
            except Exception:
                log.exception("worker failed on a job", job_id=job_id)

    async def _take(self) -> tuple[int, str]:
        """The next thing to do: a job granted its assets, an ended live window's end
        script, then the run queue's next job; waits (idle) when there is none."""
        while True:
            if self._ctx.draining:
                # Draining starts nothing new: queued jobs stay queued in the store and the
                # next start takes them in the same order.
                await anyio.sleep_forever()
            granted = self._handoff.granted
            if granted:
                return granted.popleft(), _GRANTED
            ends = self.live.ends
            if ends:
                return ends.popleft(), _WINDOW_END
            job_id = self._line.next_queued()
            if job_id is not None:
                return job_id, _PICK
            await self._idle_workers.wait()

    async def _pick(self, rc: RunControl, granted: bool) -> None:
        job = rc.job
        if not job.steps:
            job.steps = await self._ctx.store.load_steps(job.id)
        workflow = self._ctx.config.workflows.get(job.spec.workflow)
        if not granted:
            if not self._handoff.acquire(job):
                await self._handoff.wait_for_lock(rc, self._start_plan(rc, workflow))
                return
            operation, cause = "picked", "picked by a worker"
        else:
            start = self._handoff.picked(job.id)
            if start is not None:
                await self._run_started(rc, workflow, start)
                return
            operation, cause = "lock-granted", "lock granted"
        unit = self._prestart(rc, workflow)
        # Urgent when its assets were handed on: every job waiting for them waits on this.
        await self._transitions.apply(
            job, operation, S.RUNNING, cause=cause, actor="scheduler", unit=unit, urgent=granted
        )
        for step in job.steps:
            if step.idx == rc.prestarted:
                self._fanout.step_event(job, step)  # after the job's `running`, which came first
        await self._execute(rc, workflow)

    def _first_step(self, rc: RunControl, workflow: WorkflowConfig | None) -> Step | None:
        """The step whose attempt begins with the job's ``running`` (in the same write):
        the first not completed, when nothing runs before it (no start script still to
        run). Sets what the run needs to know of its start (``rc.started``,
        ``rc.defer_last``)."""
        job = rc.job
        # Stored, not guessed from the steps: a pause in the first step leaves no attempt,
        # and a retry (a new run) keeps its completed steps' attempts.
        rc.started = rc.started or job.run_started_at is not None
        if workflow is None:
            return None
        rc.defer_last = job.spec.end_at is None and workflow.end_script is None
        if not rc.started and workflow.start_script is not None:
            return None
        return next((s for s in job.steps if s.state != StepState.COMPLETED), None)

    def _start_plan(self, rc: RunControl, workflow: WorkflowConfig | None) -> LockStart | None:
        """What a grant that writes the job's start writes (None: the workflow is gone, its
        pick fails the job as before)."""
        if workflow is None:
            return None
        step = self._first_step(rc, workflow)
        return LockStart(None, None) if step is None else LockStart(step.idx, step.attempts + 1)

    def _begin(self, rc: RunControl, step: Step, attempts: int, at: float) -> None:
        step.attempts = attempts
        step.state, step.started_at, step.ended_at, step.error = StepState.RUNNING, at, None, None
        rc.prestarted = step.idx

    def _prestart(self, rc: RunControl, workflow: WorkflowConfig | None) -> Changes:
        """Record the first step's first attempt in the same write as the job's ``running``
        (:meth:`_first_step`)."""
        unit = self._ctx.store.changes()
        step = self._first_step(rc, workflow)
        if step is None:
            return unit
        self._begin(rc, step, step.attempts + 1, self._ctx.clock())
        return unit.record_step(step)

    async def _run_started(
        self, rc: RunControl, workflow: WorkflowConfig | None, start: LockStart
    ) -> None:
        """Run a job whose grant wrote its start (a cluster's one-commit hand-off): its
        ``running`` and step attempt are durable already; the job object and everyone are
        told, as after the write of :meth:`_pick`."""
        job = rc.job
        self._first_step(rc, workflow)
        step = next((s for s in job.steps if s.idx == start.step), None)
        if step is not None and start.attempts is not None:
            self._begin(rc, step, start.attempts, start.at)
        self._transitions.applied(
            job, "lock-granted", S.RUNNING, start.at, cause="lock granted", actor="scheduler"
        )
        if step is not None:
            self._fanout.step_event(job, step)
        await self._execute(rc, workflow)

    async def _execute(self, rc: RunControl, workflow: WorkflowConfig | None) -> None:
        """Run the job, then free its assets and this worker before the outcome is written.

        Once the steps and the end script are over, the assets are no longer touched, so
        the next waiter may start while the outcome's commit lands (in its own task)."""
        job = rc.job
        self.running.add(job.id)
        try:
            result = await self._run(rc, workflow)
        except BaseException:
            self._handoff.release(job.id)
            self.settled(job.id)
            raise
        if result.outcome == S.RUNNING:
            self.live.open(rc)
            return
        self.finish(rc, result)

    def finish(self, rc: RunControl, result: RunResult) -> None:
        """Free the job's assets, then hand its outcome to the store: :meth:`settled` once
        that has committed (or failed), from the store's callback, with no task per job."""
        self._handoff.release(rc.job.id)
        self._conclude(rc, result)

    async def _run(self, rc: RunControl, workflow: WorkflowConfig | None) -> RunResult:
        job = rc.job
        clock = self._ctx.clock
        if workflow is None:
            return RunResult(
                S.FAILED,
                "workflow removed from the configuration",
                ErrorOverlay(
                    OverlayCode.UNKNOWN_WORKFLOW,
                    f"workflow {job.spec.workflow!r} is no longer configured",
                    clock(),
                ),
            )
        result = await self._runner.run(rc, workflow)
        if result.outcome == S.RUNNING:
            if window_end(job.spec) > clock():
                return result  # the live window follows, on its timer
            result = window_outcome(rc)  # over already (stopped while the steps ran)
        if result.outcome in (None, S.PAUSED) or workflow.end_script is None:
            return result  # (checked here too: no coroutine on the path of most jobs)
        return await self.end_script(job, workflow, result)

    async def end_script(
        self, job: Job, workflow: WorkflowConfig | None, result: RunResult
    ) -> RunResult:
        """Run the end script (if any) with the outcome, shielded; its failure sets the
        overlay (see :func:`with_end_script_problem`)."""
        if workflow is None or workflow.end_script is None:
            return result
        with anyio.CancelScope(shield=True):
            problem = await self._runner.host.run_script(
                job, workflow.end_script, "end", str(result.outcome)
            )
        return with_end_script_problem(result, problem, self._ctx.clock())

    def settled(self, job_id: int) -> None:
        self.running.discard(job_id)
        self._lineup.settle(job_id)
        self.idle_now()
        self._line.admit_soon()

    def idle_now(self) -> None:
        if not self.running:
            self._idle.set()

    def _conclude(self, rc: RunControl, result: RunResult) -> None:
        job, outcome = rc.job, result.outcome
        if outcome is None:  # shutdown: left running, recovery resumes it
            log.info("run interrupted by shutdown", job_id=job.id)
            self.settled(job.id)
            return
        done = partial(self._concluded, rc, outcome)
        self.concluding += 1
        try:
            if outcome == S.PAUSED:
                actor = rc.stop_actor or "scheduler"
                self._transitions.apply_soon(
                    job, "pause", S.PAUSED, done, cause=result.cause, actor=actor
                )
            else:
                self._finished_soon(rc, outcome, result, done)
        except Exception as exc:  # refused by the table (nothing was written), or a bug
            done(exc)

    def _finished_soon(
        self,
        rc: RunControl,
        outcome: JobState,
        result: RunResult,
        done: Callable[[BaseException | None], None],
    ) -> None:
        job = rc.job
        error = result.error
        if error is None and outcome != S.COMPLETED:
            error = job.error  # keep an overlay whose cause is not gone
        unit = self._ctx.store.changes()
        if job.spec.resources or job.spec.pools:
            unit.release(job.id)
        for step in rc.deferred:
            unit.record_step(step)
        self._transitions.apply_soon(
            job,
            "finished",
            outcome,
            done,
            cause=result.cause,
            # A run ended by a cancel is recorded as the act of whoever canceled it.
            actor=(rc.stop_actor if outcome == S.CANCELED else None) or "scheduler",
            error=error,
            unit=unit,
            steps=rc.deferred,
        )

    def _concluded(self, rc: RunControl, outcome: JobState, exc: BaseException | None) -> None:
        """The outcome's commit answered (``exc`` None: it landed)."""
        job = rc.job
        self.concluding -= 1
        if exc is None:
            if outcome != S.PAUSED:
                rc.deferred.clear()
                self._bookings.remove_job(job.id)
        else:
            log.error("could not record a job's outcome", job_id=job.id, error=str(exc))
        self.settled(job.id)


def with_end_script_problem(result: RunResult, problem: str | None, now: float) -> RunResult:
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
    return replace(result, error=ErrorOverlay(OverlayCode.END_SCRIPT_FAILED, problem, now))
