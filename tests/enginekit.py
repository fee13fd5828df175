"""Helpers for engine tests: a real store file, real plugins, the real engine in a task group."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from jobd.config import Config, DaemonConfig, Defaults, StepConfig, WorkflowConfig
from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.store import open_store

TEST_PLUGINS = Path(__file__).parent / "engine_plugins"
FINAL = {JobState.COMPLETED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED}


def step(name: str, action: str, **kw: Any) -> StepConfig:
    params = kw.pop("params", {})
    return StepConfig(name=name, action=action, params=params, **kw)


def workflow(name: str, *steps: StepConfig, **kw: Any) -> WorkflowConfig:
    return WorkflowConfig(name=name, steps=tuple(steps), **kw)


def make_config(tmp: Path, workflows: Iterable[WorkflowConfig], **daemon: Any) -> Config:
    defaults = daemon.pop("defaults", Defaults(timeout=30, retries=0, retry_backoff=0.01))
    extra = {k: daemon.pop(k) for k in ("resources", "pools", "schedules") if k in daemon}
    d = DaemonConfig(
        state_dir=tmp,
        plugin_dirs=(TEST_PLUGINS,),
        file_roots=(tmp,),
        kill_grace=1.0,
        **{"workers": 4, "run_queue_size": 100, **daemon},
    )
    return Config(daemon=d, defaults=defaults, workflows={w.name: w for w in workflows}, **extra)


@asynccontextmanager
async def running_engine(config: Config, **kw: Any) -> AsyncIterator[Engine]:
    plugins = PluginHost(config.daemon.plugin_dirs)
    plugins.load()
    async with open_store(config.daemon.db_path, synchronous="normal") as store:
        engine = Engine(config, store, plugins, **kw)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()


async def wait_state(
    engine: Engine, job_id: int, states: Iterable[JobState] | JobState, timeout: float = 60
) -> Job:
    """Wait (on the engine's events, with a deadline) until the job is in one of ``states``."""
    wanted = {states} if isinstance(states, JobState) else set(states)
    with anyio.fail_after(timeout):
        async with engine.subscribe() as events:
            job = await engine.get_job(job_id)
            while job.state not in wanted:
                async for event in events:
                    if event.job_id == job_id and event.kind == "state":
                        break
                job = await engine.get_job(job_id)
            return job


async def wait_all(engine: Engine, job_ids: Iterable[int], timeout: float = 60) -> list[Job]:
    return [await wait_state(engine, j, FINAL, timeout) for j in job_ids]


async def wait_until(predicate: Any, timeout: float = 60, interval: float = 0.01) -> None:
    """Poll ``predicate`` (sync or async) until true, failing after ``timeout`` (generous,
    as :func:`wait_state`'s: a step's process starts slowly on two busy cores)."""
    with anyio.fail_after(timeout):
        while True:
            result = predicate()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await anyio.sleep(interval)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` does not exist or is a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


def spec(workflow: str, **kw: Any) -> JobSpec:
    for key in ("assets", "shared_assets", "resources", "pools"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return JobSpec(workflow=workflow, **kw)


INF = math.inf


RECORDING_SCRIPT = """#!/bin/sh
echo "$JOBD_EVENT${JOBD_OUTCOME:+ $JOBD_OUTCOME}" >> "{out}"
"""


def recording_scripts(tmp: Path, out: Path) -> dict[str, Any]:
    """A workflow's start and end script: one executable that appends ``start`` or
    ``end <outcome>`` to ``out`` each time it runs (for counting runs of the scripts)."""
    script = tmp / "script"
    script.write_text(RECORDING_SCRIPT.replace("{out}", str(out)))
    script.chmod(0o755)
    return {"start_script": script, "end_script": script}
