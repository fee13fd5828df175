"""What a run needs from the engine (``jobd.run.runner.RunHost``): actions, step and progress
records, isolated actions and workflow scripts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import structlog

from jobd.config import Config
from jobd.core.events import JobEvent
from jobd.core.models import Job, Step
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.plugin.action import Action, ActionContext


class EngineRunHost:
    """:class:`jobd.run.runner.RunHost` over the engine's store, plugins and event fan-out."""

    def __init__(self, ctx: Context, fanout: Fanout) -> None:
        self._ctx = ctx
        self._fanout = fanout

    @property
    def config(self) -> Config:
        return self._ctx.config

    def action(self, name: str) -> Action | None:
        return self._ctx.plugins.action(name)

    def now(self) -> float:
        return self._ctx.clock()

    async def save_step(self, job: Job, step: Step) -> None:
        store = self._ctx.store
        await store.commit(store.changes().record_step(step))
        self._fanout.step_event(job, step)

    def run_started(self, job: Job) -> None:
        """The run's start script succeeded: recorded before the first step's write (same
        queue, so it lands no later), so that a resumed or recovered run skips it."""
        job.run_started_at = now = self._ctx.clock()
        store = self._ctx.store
        store.commit_nowait(store.changes().set_run_started(job.id, now))

    async def save_pgid(self, job: Job, step: Step) -> None:
        store = self._ctx.store
        await store.commit(store.changes().set_step_pgid(job.id, step.idx, step.pgid))

    async def set_progress(self, job: Job, pct: float, message: str | None) -> None:
        job.progress, job.progress_message = pct, message
        store = self._ctx.store
        store.commit_nowait(store.changes().set_progress(job.id, pct, message))
        self._fanout.emit(
            JobEvent(
                job.id,
                "progress",
                self._ctx.clock(),
                cause="progress",
                actor="scheduler",
                data={"progress": pct, "message": message},
            )
        )

    async def run_isolated(
        self, step: Step, params: dict[str, Any], ctx: ActionContext
    ) -> Mapping[str, Any] | None:
        from jobd.run.isolation import context_data, run_isolated

        plugin_file, module_name = self._ctx.plugins.isolation_target(step.action)
        return await run_isolated(
            step.action, plugin_file, module_name, params, context_data(ctx), log=ctx.log
        )

    async def run_script(
        self, job: Job, path: Path, event: Literal["start", "end"], outcome: str | None
    ) -> str | None:
        from jobd.run.scripts import run_script

        config = self._ctx.config
        timeout = config.defaults.script_timeout
        workflow = config.workflows.get(job.spec.workflow)
        if workflow is not None and workflow.script_timeout is not None:
            timeout = workflow.script_timeout
        slog = structlog.get_logger("jobd.script").bind(job_id=job.id, step=f"{event}-script")
        result = await run_script(
            path,
            event=event,
            job=job.to_dict(),
            outcome=outcome,
            timeout=timeout,
            kill_grace=config.daemon.kill_grace,
            log=slog,
        )
        return None if result.ok else f"{event} script {path}: {result.problem}"
