"""Live windows through the real engine: due at start - preroll, running until end + postroll,
end script last, ``stop`` ending the window early, due timers rebuilt after a restart.

Windows are real and short (about a second); tests wait on the engine's events, and only
check that nothing happened *early* (lower bounds), never that it happened fast enough.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import anyio
import pytest

from jobd.config import Config, ResourceConfig
from jobd.core.errors import InvalidTransition, NotApplicable
from jobd.core.models import Job
from jobd.core.states import JobState, StepState
from jobd.engine import Engine
from tests.enginekit import (
    make_config,
    recording_scripts,
    running_engine,
    spec,
    step,
    wait_state,
    wait_until,
    workflow,
)

S = JobState


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "scripts.out"


@pytest.fixture
def config(tmp_path: Path, out: Path) -> Config:
    scripts = recording_scripts(tmp_path, out)
    flows = [
        workflow("live", step("a", "t-echo", params={"x": 1}), **scripts),
        workflow(
            "gated", step("g", "t-record", params={"log": "{log}", "gate": "{gate}"}), **scripts
        ),
    ]
    return make_config(tmp_path, flows)


def at(job: Job, state: JobState) -> float:
    """When the job entered ``state`` (its history, engine clock)."""
    return next(h.at for h in job.history if h.to_state == state)


async def step_completed(engine: Engine, job_id: int) -> None:
    """Wait for the job's last step to complete, on the engine's events."""
    with anyio.fail_after(20):
        async with engine.subscribe() as events:
            job = await engine.get_job(job_id)
            while job.steps[-1].state != StepState.COMPLETED:
                async for event in events:
                    if event.job_id == job_id and event.kind == "step":
                        break
                job = await engine.get_job(job_id)


async def test_window_runs_steps_at_start_stays_running_until_end_then_end_script(
    config: Config, out: Path
) -> None:
    async with running_engine(config) as engine:
        start = time.time() + 1
        job = await engine.submit(spec("live", start_at=start, end_at=start + 1))
        assert job.state == S.CONFIRMED
        await wait_state(engine, job.id, S.RUNNING)
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED and done.error is None
    assert [h.to_state for h in done.history] == [S.CONFIRMED, S.QUEUED, S.RUNNING, S.COMPLETED]
    assert at(done, S.QUEUED) >= start
    step_ = done.steps[0]
    assert step_.state == StepState.COMPLETED and step_.started_at is not None
    assert start <= step_.started_at and step_.ended_at is not None
    # The steps ran at the start; the job itself ended no earlier than end_at.
    assert at(done, S.COMPLETED) >= max(start + 1, step_.ended_at)
    assert out.read_text().splitlines() == ["start", "end completed"]


async def test_stop_ends_the_live_window_early(config: Config, out: Path) -> None:
    async with running_engine(config) as engine:
        start = time.time()
        job = await engine.submit(spec("live", start_at=start, end_at=start + 3600))
        await step_completed(engine, job.id)
        live = await engine.get_job(job.id)
        assert live.state == S.RUNNING  # steps done, the window goes on
        assert out.read_text().splitlines() == ["start"]
        stopped = await engine.operate(job.id, "stop")
        assert stopped is not None and stopped.state == S.COMPLETED
        assert at(stopped, S.COMPLETED) < start + 3600
        assert any("stop requested" in h.cause for h in stopped.history)
    assert out.read_text().splitlines() == ["start", "end completed"]


async def test_stop_while_steps_run_completes_once_they_are_done(
    config: Config, out: Path, tmp_path: Path
) -> None:
    gate, log = tmp_path / "gate", tmp_path / "log"
    async with running_engine(config) as engine:
        start = time.time()
        job = await engine.submit(
            spec(
                "gated",
                start_at=start,
                end_at=start + 3600,
                params={"gate": str(gate), "log": str(log)},
            )
        )
        await wait_state(engine, job.id, S.RUNNING)
        result: list[Job | None] = []

        async def stop() -> None:
            result.append(await engine.operate(job.id, "stop"))

        async def stop_recorded() -> bool:
            found = await engine.get_job(job.id)
            return any("stop requested" in h.cause for h in found.history)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            # The stop is on record before the step is allowed to end.
            await wait_until(stop_recorded)
            gate.touch()
        assert result[0] is not None and result[0].state == S.COMPLETED
    assert out.read_text().splitlines() == ["start", "end completed"]


async def test_stop_without_a_window_or_while_not_running_is_refused(config: Config) -> None:
    async with running_engine(config) as engine:
        future = await engine.submit(
            spec("live", start_at=time.time() + 3600, end_at=time.time() + 7200)
        )
        with pytest.raises(InvalidTransition, match="cannot stop a job in state confirmed"):
            await engine.operate(future.id, "stop")
        gate = Path(str(engine.config.daemon.state_dir)) / "gate"
        plain = await engine.submit(
            spec("gated", params={"gate": str(gate), "log": str(gate) + ".log"})
        )
        await wait_state(engine, plain.id, S.RUNNING)
        with pytest.raises(NotApplicable, match="no live window"):
            await engine.operate(plain.id, "stop")
        gate.touch()
        await wait_state(engine, plain.id, S.COMPLETED)


async def test_preroll_makes_it_due_early_and_postroll_keeps_it_running(
    config: Config, out: Path
) -> None:
    async with running_engine(config) as engine:
        now = time.time()
        # Due at start - preroll, an hour before its start.
        early = await engine.submit(
            spec("live", start_at=now + 3600, end_at=now + 3700, preroll=3599.5, postroll=10)
        )
        assert early.due_at == pytest.approx(now + 0.5)
        await step_completed(engine, early.id)
        running = await engine.get_job(early.id)
        assert running.state == S.RUNNING
        assert at(running, S.QUEUED) >= now + 0.5
        stopped = await engine.operate(early.id, "stop")
        assert stopped is not None and stopped.state == S.COMPLETED

        # Postroll: the window lasts until end + postroll.
        start = time.time() + 0.5
        job = await engine.submit(spec("live", start_at=start, end_at=start, postroll=1))
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
        assert done.state == S.COMPLETED
        assert at(done, S.COMPLETED) >= start + 1


async def test_job_without_end_completes_when_its_steps_do(config: Config, out: Path) -> None:
    async with running_engine(config) as engine:
        start = time.time() + 0.5
        job = await engine.submit(spec("live", start_at=start))
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED
    assert at(done, S.QUEUED) >= start
    assert out.read_text().splitlines() == ["start", "end completed"]


async def test_due_timer_rebuilt_from_the_store_after_a_restart(config: Config, out: Path) -> None:
    async with running_engine(config) as engine:
        start = time.time() + 1
        job = await engine.submit(spec("live", start_at=start, end_at=start + 0.5))
    async with running_engine(config) as engine:
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED
    assert at(done, S.QUEUED) >= start and at(done, S.COMPLETED) >= start + 0.5
    assert out.read_text().splitlines() == ["start", "end completed"]


async def test_cancel_during_the_window_runs_the_end_script_and_releases(
    tmp_path: Path, out: Path, config: Config
) -> None:
    config = dataclasses.replace(config, resources={"studio": ResourceConfig("studio")})
    async with running_engine(config) as engine:
        start = time.time()
        job = await engine.submit(
            spec("live", start_at=start, end_at=start + 3600, resources=["studio"])
        )
        await step_completed(engine, job.id)
        canceled = await engine.operate(job.id, "cancel")
        assert canceled is not None and canceled.state == S.CANCELED
        assert canceled.reservations == []
        assert [h.to_state for h in canceled.history][-2:] == [S.CANCEL_REQUESTED, S.CANCELED]
        # The slot is free again.
        again = await engine.submit(
            spec(
                "live",
                start_at=start + 10,
                end_at=start + 20,
                resources=["studio"],
                state=S.TENTATIVE,
            )
        )
        assert [r.resource for r in again.reservations] == ["studio"]
    assert out.read_text().splitlines() == ["start", "end canceled"]


async def test_a_live_window_resumes_after_a_daemon_restart(config: Config, out: Path) -> None:
    async with running_engine(config) as engine:
        start = time.time()
        job = await engine.submit(spec("live", start_at=start, end_at=start + 2))
        await step_completed(engine, job.id)
    # The engine stopped abruptly in the window: the job is still `running` in the store.
    async with running_engine(config) as engine:
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED and done.error is None
    assert at(done, S.COMPLETED) >= start + 2
    assert done.steps[0].attempts == 1  # the completed step did not run again
    assert out.read_text().splitlines() == ["start", "end completed"]


def _one_worker(config: Config) -> Config:
    return dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, workers=1))


async def _in_window(engine: Engine, job_id: int) -> None:
    """Wait until the job's steps are done and its live window is open (no worker held)."""
    await wait_until(lambda: job_id in engine.windows)


async def test_live_windows_hold_no_worker_and_keep_their_locks(config: Config, out: Path) -> None:
    config = _one_worker(config)
    async with running_engine(config) as engine:
        start = time.time()
        windows = [
            await engine.submit(
                spec("live", start_at=start, end_at=start + 3600, assets=[f"vt-{i}"])
            )
            for i in range(3)
        ]
        for job in windows:
            await _in_window(engine, job.id)
        info = engine.queue_info()
        assert info["busy_workers"] == 0 and info["live_windows"] == 3
        assert set(info["running"]) == {job.id for job in windows}
        # The one worker is free: a plain job runs while three windows are live.
        plain = await engine.submit(spec("live"))
        assert (await wait_state(engine, plain.id, {S.COMPLETED, S.FAILED})).state == S.COMPLETED
        # A window keeps its assets: a job needing one waits for the lock, without a worker.
        blocked = await engine.submit(spec("live", assets=["vt-0"]))
        await wait_state(engine, blocked.id, S.WAITING_FOR_LOCK)
        assert (await engine.get_job(windows[0].id)).state == S.RUNNING
        stopped = await engine.operate(windows[0].id, "stop")
        assert stopped is not None and stopped.state == S.COMPLETED
        done = await wait_state(engine, blocked.id, {S.COMPLETED, S.FAILED})
        assert done.state == S.COMPLETED
        # Not before the stop (the lock is handed on as the outcome's write lands).
        stop_at = next(h.at for h in stopped.history if "stop requested" in h.cause)
        assert at(done, S.RUNNING) >= stop_at
        for job in windows[1:]:
            assert (await engine.get_job(job.id)).state == S.RUNNING


async def test_pause_in_the_window_frees_its_assets_and_resume_opens_it_again(
    config: Config, out: Path
) -> None:
    async with running_engine(config) as engine:
        start = time.time()
        job = await engine.submit(spec("live", start_at=start, end_at=start + 3600, assets=["a"]))
        await _in_window(engine, job.id)
        paused = await engine.operate(job.id, "pause")
        assert paused is not None and paused.state == S.PAUSED
        assert job.id not in engine.windows
        other = await engine.submit(spec("live", assets=["a"]))  # the asset is free now
        assert (await wait_state(engine, other.id, {S.COMPLETED, S.FAILED})).state == S.COMPLETED
        await engine.operate(job.id, "resume")
        await _in_window(engine, job.id)
        resumed = await engine.get_job(job.id)
        assert resumed.state == S.RUNNING and resumed.steps[0].attempts == 1
        stopped = await engine.operate(job.id, "stop")
        assert stopped is not None and stopped.state == S.COMPLETED
    # One run: one start script (not again on resume), one end script; plus the other job's.
    assert out.read_text().splitlines() == [
        "start",
        "start",
        "end completed",
        "end completed",
    ]


async def test_a_window_recovered_after_a_restart_holds_no_worker_and_its_locks(
    config: Config, out: Path
) -> None:
    config = _one_worker(config)
    async with running_engine(config) as engine:
        start = time.time()
        job = await engine.submit(spec("live", start_at=start, end_at=start + 3600, assets=["a"]))
        await _in_window(engine, job.id)
    async with running_engine(config) as engine:
        assert job.id in engine.windows and engine.queue_info()["busy_workers"] == 0
        plain = await engine.submit(spec("live"))
        assert (await wait_state(engine, plain.id, {S.COMPLETED, S.FAILED})).state == S.COMPLETED
        blocked = await engine.submit(spec("live", assets=["a"]))
        await wait_state(engine, blocked.id, S.WAITING_FOR_LOCK)
        canceled = await engine.operate(job.id, "cancel")
        assert canceled is not None and canceled.state == S.CANCELED
        assert (await wait_state(engine, blocked.id, {S.COMPLETED, S.FAILED})).state == S.COMPLETED
    # The window was reopened as it was: no new transition, no second start script.
    states = [h.to_state for h in canceled.history]
    assert states == [S.CONFIRMED, S.QUEUED, S.RUNNING, S.CANCEL_REQUESTED, S.CANCELED]
    assert out.read_text().splitlines() == [
        "start",  # the window's, before the restart
        "start",  # the plain job's
        "end completed",
        "end canceled",  # the window's end script, before its asset is handed on
        "start",  # the job that waited for it
        "end completed",
    ]
