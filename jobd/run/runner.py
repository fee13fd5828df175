"""One run of one job on a worker: start script → steps (with timeouts and retries).

The live window and the end script that follow are the engine's (``jobd.run.windows``).

The runner decides *what happened*; the engine (through :class:`RunHost`)
records it. Every run ends in a :class:`RunResult`, whatever stopped it:
a step's outcome, the job's timeout, an operator (pause, cancel, stop), or the
daemon shutting down. Cancellation, ``Exception`` and other ``BaseException``
are handled apart, as apscheduler's ``_run_job`` does.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import structlog

from jobd.config import Config, WorkflowConfig
from jobd.core.models import ErrorOverlay, Job, OverlayCode, Step
from jobd.core.states import JobState, StepState
from jobd.logging import RUNNING_STEP
from jobd.plugin.action import Action, ActionContext
from jobd.run.deadlines import Deadline, Deadlines

log = structlog.get_logger("jobd.runner")

#: Why an operator or the daemon stopped a run.
PAUSE, CANCEL, SHUTDOWN = "pause", "cancel", "shutdown"


@dataclass(slots=True)
class RunControl:
    """The handle the engine keeps on a job it is running."""

    job: Job
    #: Made when the run starts, not when the job is queued: most jobs never need one
    #: before, and making an anyio scope is not free (the backend is looked up each time).
    scope: anyio.CancelScope | None = None
    stop_reason: str | None = None
    #: Who asked for the stop (``cli:alice``): the actor of the run's pause or cancel row.
    stop_actor: str | None = None
    #: The start script ran (or there is none): a resumed run does not run it again.
    started: bool = False
    #: Index of a step whose first attempt was recorded with the job's ``running`` write.
    prestarted: int | None = None
    #: A last step whose completion is written together with the job's outcome.
    deferred: list[Step] = field(default_factory=list)
    #: Nothing follows the last step (no window, no end script): its write may be deferred.
    defer_last: bool = False
    #: The deadline that fired (:mod:`.deadlines`): the job's (``what`` None), which stays,
    #: or a step's (``what`` the step), until the run has recorded that attempt.
    expired: Deadline | None = None

    def stop(self, reason: str, actor: str | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_actor = reason, actor
        if self.scope is not None:
            self.scope.cancel()

    def expire(self, deadline: Deadline) -> None:
        """A timeout of the run (its job's or its step's) expired: cancel what runs."""
        if self.expired is None or deadline.what is None:  # the job's timeout prevails
            self.expired = deadline
        if self.scope is not None:
            self.scope.cancel()


@dataclass(frozen=True, slots=True)
class RunResult:
    #: COMPLETED, FAILED, TIMED_OUT, CANCELED, or PAUSED; None when interrupted by shutdown;
    #: RUNNING when the steps are done and the job's live window follows (the engine keeps
    #: it running on a timer, without a worker, and ends it with the end script).
    outcome: JobState | None
    cause: str
    error: ErrorOverlay | None = None


class RunHost(Protocol):
    """What the runner needs from the engine."""

    @property
    def config(self) -> Config: ...

    def action(self, name: str) -> Action | None: ...

    async def save_step(self, job: Job, step: Step) -> None: ...

    def run_started(self, job: Job) -> None:
        """The run's start script succeeded: record it with the job (a resumed or
        recovered run continues without running it again)."""
        ...

    async def save_pgid(self, job: Job, step: Step) -> None:
        """Durably record the step's process group (recovery kills what is left of it)."""
        ...

    async def set_progress(self, job: Job, pct: float, message: str | None) -> None: ...

    async def run_isolated(
        self, step: Step, params: dict[str, Any], ctx: ActionContext
    ) -> Mapping[str, Any] | None: ...

    async def run_script(
        self, job: Job, path: Path, event: Literal["start", "end"], outcome: str | None
    ) -> str | None:
        """Run a workflow script; returns None on success, else the problem."""
        ...

    def now(self) -> float: ...


class StepFailed(Exception):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Runner:
    def __init__(self, host: RunHost) -> None:
        self.host = host
        #: The job's and every step's timeout, on one timer of the loop (:mod:`.deadlines`).
        self.deadlines = Deadlines()

    async def run(self, rc: RunControl, workflow: WorkflowConfig) -> RunResult:
        """Run the job's start script and steps to a :class:`RunResult`.

        Its timeout and each step attempt's are deadlines of :attr:`deadlines`; the one that
        fires cancels the run's scope (:meth:`RunControl.expire`): the job's ends the run
        ``timed-out``; a step's ends that attempt (recorded as a timed-out attempt), and the
        run goes on in a new scope, with the step's retry after its backoff or its failure."""
        limit = rc.job.spec.timeout
        rc.expired = None
        job_deadline = self.deadlines.arm(limit, rc) if limit else None
        retry: Step | None = None
        try:
            while True:
                result = await self._run_scoped(rc, workflow, retry)
                if isinstance(result, RunResult):
                    return result
                retry = result
        finally:
            if job_deadline is not None:
                self.deadlines.disarm(job_deadline)

    async def _run_scoped(
        self, rc: RunControl, workflow: WorkflowConfig, retry: Step | None
    ) -> RunResult | Step:
        """The run in a new cancel scope (first ``retry``'s backoff, if given) until it ends,
        or until a step's attempt timed out with attempts left: then that step, to retry."""
        rc.scope = scope = anyio.CancelScope()
        if rc.stop_reason is not None or rc.expired is not None:  # stopped meanwhile
            scope.cancel()
        with scope:
            if retry is not None:
                await anyio.sleep(backoff(retry.retry_backoff, retry.attempts))
            return await self._run_body(rc, workflow)
        expired = rc.expired
        if rc.stop_reason is not None or expired is None:
            return self._stopped(rc)
        if not isinstance(expired.what, Step):
            return self._timed_out(rc)
        rc.expired = None  # that attempt is recorded (_record_stopped_step)
        step = expired.what
        if step.state == StepState.SOFT_FAILED:
            return step
        return _step_failure(step, step.state == StepState.TIMED_OUT, self.host.now())

    def _timed_out(self, rc: RunControl) -> RunResult:
        job = rc.job
        # The step it stopped (if one was running) was marked timed-out on the way.
        cut = next((s for s in job.steps if s.state == StepState.TIMED_OUT), None)
        where = f" in step {cut.name}" if cut is not None else ""
        return RunResult(
            JobState.TIMED_OUT,
            f"job timeout of {job.spec.timeout:g} s",
            ErrorOverlay(
                OverlayCode.TIMEOUT,
                f"the job exceeded its timeout of {job.spec.timeout:g} s{where}",
                self.host.now(),
            ),
        )

    def _stopped(self, rc: RunControl) -> RunResult:
        if rc.stop_reason == PAUSE:
            return RunResult(JobState.PAUSED, "paused by an operator")
        if rc.stop_reason == CANCEL:
            return RunResult(JobState.CANCELED, "canceled by an operator")
        return RunResult(None, "interrupted by daemon shutdown")

    async def _run_body(self, rc: RunControl, workflow: WorkflowConfig) -> RunResult:
        job = rc.job
        if not rc.started:
            if workflow.start_script is not None:
                problem = await self.host.run_script(job, workflow.start_script, "start", None)
                if problem is not None:
                    return RunResult(
                        JobState.FAILED,
                        "start script failed",
                        ErrorOverlay(OverlayCode.START_SCRIPT_FAILED, problem, self.host.now()),
                    )
                self.host.run_started(job)
            rc.started = True
        for step in job.steps:
            if step.state == StepState.COMPLETED:
                continue
            failure = await self._run_step(rc, step)
            if failure is not None:
                return failure
        if job.spec.end_at is not None:
            # The live window is the engine's timer, not this worker's (SPEC §3.7).
            return RunResult(JobState.RUNNING, "all steps completed; live window")
        return RunResult(JobState.COMPLETED, "all steps completed")

    async def _run_step(self, rc: RunControl, step: Step) -> RunResult | None:
        """Run a step until it completes or its attempts are used up; None means completed."""
        while True:
            if rc.prestarted == step.idx:
                rc.prestarted = None  # its start is already durable with the job's `running`
            else:
                step.attempts += 1
                step.state = StepState.RUNNING
                step.started_at, step.ended_at, step.error = self.host.now(), None, None
                await self.host.save_step(rc.job, step)
            token = RUNNING_STEP.set((rc.job.id, step.name))  # its lines go to the job's log
            try:
                outputs = await self._attempt(rc, step)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._record_stopped_step(rc, step)
                raise
            except StepFailed as exc:
                if await self._record_failed_attempt(rc, step, exc):
                    await anyio.sleep(backoff(step.retry_backoff, step.attempts))
                    continue
                return _step_failure(step, exc.timed_out, self.host.now())
            finally:
                RUNNING_STEP.reset(token)
            step.state, step.outputs, step.ended_at = StepState.COMPLETED, outputs, self.host.now()
            if rc.defer_last and step is rc.job.steps[-1]:
                # Written in the same transaction as the job's outcome: one commit fewer.
                rc.deferred.append(step)
            else:
                await self.host.save_step(rc.job, step)
            return None

    async def _attempt(self, rc: RunControl, step: Step) -> dict[str, Any] | None:
        action = self.host.action(step.action)
        if action is None:
            raise StepFailed(f"unknown action {step.action!r} (no loaded plugin offers it)")
        ctx = self._context(rc, step)
        timeout = step.timeout
        # A deadline on the runner's one timer, no cancel scope of the step's own: see run().
        deadline = self.deadlines.arm(timeout, rc, step) if timeout else None
        result: Any = None
        try:
            try:
                if step.isolation == "process":
                    result = await self.host.run_isolated(step, dict(step.params), ctx)
                else:
                    result = await action.run(ctx, **step.params)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # a plugin's bug fails its attempt, never the daemon
                if deadline is None or not deadline.fired:
                    if isinstance(exc, StepFailed):
                        raise
                    raise StepFailed(f"{type(exc).__name__}: {exc}") from exc
            if deadline is not None and deadline.fired:
                # It caught its cancellation and returned (or raised): timed out all the same.
                # The run's scope is cancelled: this raises into _run_step's handler.
                await anyio.lowlevel.checkpoint()
                raise StepFailed(f"timed out after {timeout:g} s", timed_out=True)
        finally:
            if deadline is not None:
                self.deadlines.disarm(deadline)
        return _check_outputs(step, result)

    def _context(self, rc: RunControl, step: Step) -> ActionContext:
        job, cfg = rc.job, self.host.config
        workdir = _LazyPath(cfg.daemon.state_dir, job.id)
        outputs = {s.name: s.outputs for s in job.steps if s.state == StepState.COMPLETED}

        async def progress(pct: float, message: str | None) -> None:
            await self.host.set_progress(job, pct, message)

        async def pgid(value: int | None) -> None:
            step.pgid = value
            await self.host.save_pgid(job, step)

        return ActionContext(
            job_id=job.id,
            job=job.to_dict,
            step=step.name,
            attempt=step.attempts,
            params=step.params,
            outputs=outputs,
            assets=job.spec.assets,
            resources=[r.resource for r in job.reservations],
            workdir=workdir,
            log=lambda: structlog.get_logger("jobd.action").bind(job_id=job.id, step=step.name),
            kill_grace=cfg.daemon.kill_grace,
            file_roots=cfg.daemon.file_roots,
            progress_cb=progress,
            pgid_cb=pgid,
        )

    async def _record_failed_attempt(self, rc: RunControl, step: Step, exc: StepFailed) -> bool:
        """Record a failed attempt; True if another attempt follows (the caller waits for
        its backoff)."""
        step.error, step.ended_at = str(exc), self.host.now()
        if step.attempts <= step.retries:
            step.state = StepState.SOFT_FAILED
            await self.host.save_step(rc.job, step)
            log.warning(
                "attempt failed, retrying",
                job_id=rc.job.id,
                step=step.name,
                attempt=step.attempts,
                error=str(exc),
            )
            return True
        step.state = StepState.TIMED_OUT if exc.timed_out else StepState.FAILED
        await self.host.save_step(rc.job, step)
        log.warning(
            "step failed", job_id=rc.job.id, step=step.name, attempts=step.attempts, error=str(exc)
        )
        return False

    async def _record_stopped_step(self, rc: RunControl, step: Step) -> None:
        if rc.stop_reason == PAUSE:
            # SPEC: a paused attempt does not count; resume runs this step again.
            step.attempts -= 1
            step.state, step.error = StepState.QUEUED, "paused"
        elif rc.stop_reason == CANCEL:
            step.state, step.error = StepState.CANCELED, "canceled by an operator"
        elif rc.stop_reason == SHUTDOWN:
            # A graceful stop is not the step's fault: like a pause, the attempt does not
            # count. The job stays `running` in the store and recovery resumes it here.
            step.attempts -= 1
            step.state, step.error = StepState.QUEUED, "interrupted by daemon shutdown"
        elif rc.expired is not None and rc.expired.what is step:  # the step's own timeout
            timeout = f"timed out after {step.timeout:g} s"
            await self._record_failed_attempt(rc, step, StepFailed(timeout, timed_out=True))
            return
        else:  # the job's own timeout
            step.state, step.error = StepState.TIMED_OUT, "the job's timeout expired"
        step.ended_at = self.host.now()
        await self.host.save_step(rc.job, step)


#: The longest step error an overlay quotes (the step keeps all of it).
REASON_CHARS = 1000


def _step_failure(step: Step, timed_out: bool, now: float) -> RunResult:
    """The outcome of a step out of attempts, with its reason as the job's error overlay
    (``step-failed`` / ``step-timed-out``): what ``list`` and ``show`` print for the job."""
    state = JobState.TIMED_OUT if timed_out else JobState.FAILED
    tries = f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}"
    error = (step.error or "no error recorded")[:REASON_CHARS]
    return RunResult(
        state,
        f"step {step.name} {step.state}",
        ErrorOverlay(
            OverlayCode.STEP_TIMED_OUT if timed_out else OverlayCode.STEP_FAILED,
            f"step {step.name} {step.state} after {tries}: {error}",
            now,
        ),
    )


class _LazyPath:
    """``state_dir/work/<job id>``, joined only if an action asks for its workdir."""

    def __init__(self, state_dir: Path, job_id: int) -> None:
        self.state_dir, self.job_id = state_dir, job_id

    def __call__(self) -> Path:
        return self.state_dir / "work" / str(self.job_id)


def backoff(base: float, attempt: int) -> float:
    """Exponential backoff with full jitter in [50 %, 100 %] of ``base * 2**(attempt-1)``."""
    delay = base * math.pow(2, max(0, attempt - 1))
    return min(delay, 3600.0) * random.uniform(0.5, 1.0)


def _check_outputs(step: Step, result: object) -> dict[str, Any] | None:
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise StepFailed(
            f"action {step.action!r} returned {type(result).__name__}, expected a dict or None"
        )
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise StepFailed(
            f"action {step.action!r} returned outputs that are not JSON: {exc}"
        ) from exc
    return dict(result)
