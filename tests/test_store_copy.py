"""``jobd db copy``'s core (jobd/store/copy.py): a real SQLite store into a real PostgreSQL one."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobd.core.errors import StoreError
from jobd.core.models import ErrorOverlay, Job, JobSpec, Reservation, Step
from jobd.core.states import JobState, StepState
from jobd.store import Store
from jobd.store.copy import copy_sqlite_to_postgres
from jobd.store.postgres import open_store as open_postgres
from jobd.store.sqlite import open_store as open_sqlite

S = JobState


def _job(job_id: int, state: JobState, **spec: object) -> Job:
    return Job(
        id=job_id,
        spec=JobSpec(workflow="wf", **spec),  # type: ignore[arg-type]
        state=state,
        created_at=1.0,
        updated_at=2.0,
        due_at=3.0,
    )


async def _fill(store: Store) -> None:
    unit = store.changes()
    for job in (
        _job(1, S.COMPLETED, name="done"),
        _job(2, S.RUNNING, resources=("r",), start_at=5.0, end_at=9.0),
        _job(3, S.COMPLETED),
    ):
        unit.insert_job(job).record_history(job.id, 1.0, None, job.state, "submitted", "ann")
        unit.insert_step(Step(job_id=job.id, idx=0, name="s", action="noop", params={"x": 1}))
    unit.reserve(Reservation(2, "r", 5.0, 9.0, "pool"))
    unit.set_progress(2, 40.0, "almost").set_run_started(2, 4.0)
    unit.set_error(1, ErrorOverlay("end-script-failed", "x", 2.0), 2.0)
    unit.append_log(1, 1.5, "s", "info", "one").append_log(1, 1.6, None, "warning", "two")
    await store.commit(unit)
    step = Step(job_id=1, idx=0, name="s", action="noop", params={"x": 1})
    step.state, step.attempts, step.outputs = StepState.COMPLETED, 2, {"out": [1]}
    await store.commit(store.changes().record_step(step))
    deleting = store.changes().delete_job(3, S.COMPLETED)
    await store.commit(deleting.record_history(3, 3.0, S.COMPLETED, None, "deleted", "ann"))
    firings = store.changes().record_firing("nightly", 100.0, "fired", job_id=1, at=100.0)
    firings.record_firing("nightly", 50.0, "missed", reason="down", at=101.0)
    firings.record_firing("nightly", 200.0, "skipped", reason="busy", at=200.0)
    await store.commit(firings.set_schedule_paused("nightly", 201.0, 201.0, "bob"))


async def test_every_record_comes_across(tmp_path: Path, pg_url: str) -> None:
    async with open_sqlite(tmp_path / "jobd.db") as src:
        await _fill(src)
    done = await copy_sqlite_to_postgres(tmp_path / "jobd.db", pg_url)
    assert (done.jobs, done.steps, done.reservations, done.log_lines) == (2, 2, 1, 2)
    assert (done.history, done.schedules, done.schedule_events) == (4, 1, 4)
    async with open_sqlite(tmp_path / "jobd.db") as src, open_postgres(pg_url) as dst:
        for job_id in (1, 2):
            assert await dst.load_job(job_id) == await src.load_job(job_id)
        assert await dst.load_history(3) == await src.load_history(3)  # a deleted job's
        assert await dst.load_job(3) is None
        assert [(x["message"], x["step"]) for x in await dst.job_log(1, 0, 10)] == [
            ("one", "s"),
            ("two", None),
        ]
        assert await dst.schedule_rows() == await src.schedule_rows()
        src_events = await src.schedule_events("nightly")
        dst_events = await dst.schedule_events("nightly")
        assert [(e["kind"], e["fire_time"], e["reason"]) for e in dst_events] == [
            (e["kind"], e["fire_time"], e["reason"]) for e in src_events
        ]
        assert await dst.max_job_id() == 3


async def test_a_target_that_is_not_empty_is_refused(tmp_path: Path, pg_url: str) -> None:
    async with open_sqlite(tmp_path / "jobd.db") as src:
        await _fill(src)
    await copy_sqlite_to_postgres(tmp_path / "jobd.db", pg_url)
    with pytest.raises(StoreError, match="not empty"):
        await copy_sqlite_to_postgres(tmp_path / "jobd.db", pg_url)


def test_a_daemon_on_sqlite_never_loads_the_postgresql_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jobd.service.daemon, jobd.store, jobd.store.sqlite, jobd.client.cli;"
        " print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'jobd.store.postgres'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
