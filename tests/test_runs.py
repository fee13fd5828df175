"""A run (SPEC §3) has one start script and one end script: pause/resume and a daemon restart
continue the same run without its start script; retry and restart begin a new run, which
does. Through the real engine, real scripts and a real SQLite file (also one of schema 2)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from jobd.config import Config
from jobd.core.states import JobState, StepState
from jobd.store import open_store
from jobd.store.sqlite import SCHEMA_VERSION
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
    gated = step("g", "t-record", params={"log": "{log}", "gate": "{gate}"}, retries=1)
    flaky = step("f", "t-flaky", params={"counter": "{counter}", "fail_times": 1})
    return make_config(
        tmp_path,
        [
            workflow("gated", gated, **scripts),
            workflow("then-fails", step("a", "t-noop"), flaky, **scripts),
        ],
    )


def lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def gated(tmp_path: Path) -> Any:
    return spec("gated", params={"log": str(tmp_path / "log"), "gate": str(tmp_path / "gate")})


async def step_running(engine: Any, job_id: int) -> bool:
    job = await engine.get_job(job_id)
    return job.state == S.RUNNING and job.steps[0].state == StepState.RUNNING


async def test_pause_and_resume_continue_the_run_without_its_start_script(
    config: Config, out: Path, tmp_path: Path
) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(gated(tmp_path))
        await wait_until(lambda: step_running(engine, job.id))
        paused = await engine.operate(job.id, "pause")
        assert paused is not None and paused.state == S.PAUSED
        assert paused.steps[0].attempts == 0  # the paused attempt does not count
        await engine.operate(job.id, "resume")
        await wait_until(lambda: step_running(engine, job.id))
        (tmp_path / "gate").touch()
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED
    assert lines(out) == ["start", "end completed"]


async def test_a_daemon_restart_continues_the_run_without_its_start_script(
    config: Config, out: Path, tmp_path: Path
) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(gated(tmp_path))
        await wait_until(lambda: step_running(engine, job.id))
    # The engine stopped abruptly in the step: recovery resumes the same run.
    async with running_engine(config) as engine:
        await wait_until(lambda: step_running(engine, job.id))
        (tmp_path / "gate").touch()
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED
    assert lines(out) == ["start", "end completed"]


async def test_retry_begins_a_new_run_with_its_start_script(
    config: Config, out: Path, tmp_path: Path
) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("then-fails", params={"counter": str(tmp_path / "n")}))
        await wait_state(engine, job.id, S.FAILED)
        await engine.operate(job.id, "retry")
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED
    assert done.steps[0].attempts == 1  # the completed step did not run again
    assert lines(out) == ["start", "end failed", "start", "end completed"]


async def test_a_schema_2_database_is_migrated_and_a_started_run_stays_started(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    sql = Path(__file__).parent.parent / "jobd" / "store" / "sqlite" / "sql"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript((sql / "schema.sql").read_text())
        conn.executescript((sql / "migrate-2.sql").read_text())
        conn.execute("PRAGMA user_version = 2")
        for job_id, state in ((1, "paused"), (2, "confirmed")):
            conn.execute(
                "INSERT INTO jobs (id, workflow, state, spec, created_at, updated_at)"
                " VALUES (?, 'w', ?, '{\"workflow\": \"w\"}', 0, 5)",
                (job_id, state),
            )
        conn.execute(
            "INSERT INTO steps (job_id, idx, name, action, params, state, attempts)"
            " VALUES (1, 0, 'a', 'x', '{}', 'completed', 1)"
        )
        conn.commit()
    async with open_store(db) as store:
        started = await store.load_job(1)
        fresh = await store.load_job(2)
    assert started is not None and started.run_started_at == 5
    assert fresh is not None and fresh.run_started_at is None
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
