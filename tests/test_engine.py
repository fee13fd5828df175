"""The engine end to end in one process: real SQLite file, real plugins, real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from jobd.core.errors import InvalidTransition, NotFound, ValidationError
from jobd.core.states import JobState, StepState
from tests.enginekit import (
    make_config,
    pid_gone,
    running_engine,
    spec,
    step,
    wait_all,
    wait_state,
    wait_until,
    workflow,
)

S = JobState


def _flows(tmp: Path) -> list:
    return [
        workflow("noop", step("a", "t-noop")),
        workflow(
            "chain",
            step("first", "t-echo", params={"x": "{x}"}),
            step("second", "t-echo", params={"y": "pre-{x}-post"}),
        ),
        workflow("record", step("r", "t-record", params={"log": "{log}", "gate": "{gate}"})),
        workflow("recordhold", step("r", "t-record", params={"log": "{log}", "hold": "{hold}"})),
        workflow(
            "flaky",
            step(
                "f",
                "t-flaky",
                params={"counter": "{counter}", "fail_times": "{n}"},
                retries=2,
                retry_backoff=0.01,
            ),
        ),
        workflow("hang", step("h", "t-hang", params={"marker": "{marker}"})),
        workflow("hang-short", step("h", "t-hang", params={}, timeout=0.5)),
        workflow("spawn", step("s", "t-spawn", params={"pidfile": "{pidfile}"}, timeout=1)),
    ]


@pytest.fixture
def config(tmp_path: Path):
    return make_config(tmp_path, _flows(tmp_path))


async def test_submit_runs_steps_in_order_passing_outputs(config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("chain", params={"x": "a b"}))
        done = await wait_state(engine, job.id, S.COMPLETED)
    first, second = done.steps
    assert first.outputs == {"params": {"x": "a b"}, "seen_outputs": {}}
    assert second.outputs["params"] == {"y": "pre-a b-post"}
    assert second.outputs["seen_outputs"]["first"]["params"] == {"x": "a b"}
    assert [h.to_state for h in done.history] == [S.CONFIRMED, S.QUEUED, S.RUNNING, S.COMPLETED]
    assert all(s.state == StepState.COMPLETED and s.attempts == 1 for s in done.steps)


async def test_missing_template_parameter_refuses_submission(config) -> None:
    async with running_engine(config) as engine:
        with pytest.raises(ValidationError, match="missing parameter 'x'"):
            await engine.submit(spec("chain"))
        with pytest.raises(ValidationError, match="unknown workflow"):
            await engine.submit(spec("nope"))
        jobs, _ = await engine.list_jobs()
        assert jobs == []


async def test_retries_with_soft_failed_then_completed(config, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    async with running_engine(config) as engine:
        job = await engine.submit(spec("flaky", params={"counter": str(counter), "n": 2}))
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED
    assert done.steps[0].attempts == 3
    assert counter.read_text() == "3"


async def test_failure_after_retries_then_retry_runs_only_failed_step(
    config, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    async with running_engine(config) as engine:
        job = await engine.submit(spec("flaky", params={"counter": str(counter), "n": 3}))
        failed = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
        assert failed.state == S.FAILED
        assert failed.steps[0].state == StepState.FAILED
        assert "flaky failure 3" in (failed.steps[0].error or "")
        await engine.operate(job.id, "retry")
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
    assert done.state == S.COMPLETED


async def test_step_timeout_kills_grandchild(config, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    async with running_engine(config) as engine:
        job = await engine.submit(spec("spawn", params={"pidfile": str(pidfile)}))
        done = await wait_state(engine, job.id, {S.TIMED_OUT, S.FAILED, S.COMPLETED})
    assert done.state == S.TIMED_OUT
    assert done.steps[0].state == StepState.TIMED_OUT
    pid = int(pidfile.read_text())

    await wait_until(lambda: pid_gone(pid), timeout=10)


async def test_pause_resume_continues_and_cancel(config, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with running_engine(config) as engine:
        job = await engine.submit(spec("hang", params={"marker": str(marker)}))
        await wait_until(marker.exists)
        paused = await engine.operate(job.id, "pause")
        assert paused is not None and paused.state == S.PAUSED
        assert paused.steps[0].state == StepState.QUEUED
        assert paused.steps[0].attempts == 0  # a paused attempt does not count
        assert (await engine.locks_info()) == []
        marker.unlink()
        await engine.operate(job.id, "resume")
        await wait_until(marker.exists)
        canceled = await engine.operate(job.id, "cancel")
        assert canceled is not None and canceled.state == S.CANCELED
        assert canceled.steps[0].state == StepState.CANCELED
        with pytest.raises(InvalidTransition, match="cannot resume a job in state canceled"):
            await engine.operate(job.id, "resume")


async def test_refused_operation_names_state_and_allowed(config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("noop"))
        await wait_state(engine, job.id, S.COMPLETED)
        with pytest.raises(InvalidTransition) as info:
            await engine.operate(job.id, "pause")
        assert "completed" in str(info.value) and "invoice-ready" in str(info.value)
        with pytest.raises(NotFound):
            await engine.operate(9999, "cancel")
        await engine.operate(job.id, "invoice-ready")
        final = await engine.operate(job.id, "invoiced")
        assert final is not None and final.state == S.INVOICED


async def test_exclusive_asset_fifo_and_never_two_holders(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path), workers=4)
    log = tmp_path / "log"
    async with running_engine(config) as engine:
        ids = [
            (
                await engine.submit(
                    spec("recordhold", assets=["A"], params={"log": str(log), "hold": 0.01})
                )
            ).id
            for _ in range(12)
        ]
        jobs = await wait_all(engine, ids)
    assert all(j.state == S.COMPLETED for j in jobs)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    holder = None
    for ev in events:
        if ev["ev"] == "start":
            assert holder is None, "two exclusive holders of A"
            holder = ev["job"]
        else:
            assert holder == ev["job"]
            holder = None
    starts = [ev["job"] for ev in events if ev["ev"] == "start"]
    assert starts == ids  # FIFO


async def test_waiting_job_holds_no_worker(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path), workers=2)
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        holder = await engine.submit(
            spec("record", assets=["A"], params={"log": str(log), "gate": str(gate)})
        )
        await wait_state(engine, holder.id, S.RUNNING)
        waiters = [
            await engine.submit(
                spec("record", assets=["A"], params={"log": str(log), "gate": str(gate)})
            )
            for _ in range(3)
        ]
        for w in waiters:
            await wait_state(engine, w.id, S.WAITING_FOR_LOCK)
        free = await engine.submit(spec("noop"))
        await wait_state(engine, free.id, S.COMPLETED)  # a worker was still free
        locks = await engine.locks_info()
        assert [w["job_id"] for w in locks[0]["waiters"]] == [w.id for w in waiters]
        gate.write_text("go")
        await wait_all(engine, [holder.id] + [w.id for w in waiters])


async def test_lock_timeout_fails_with_overlay(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path))
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        holder = await engine.submit(
            spec("record", assets=["A"], params={"log": str(log), "gate": str(gate)})
        )
        await wait_state(engine, holder.id, S.RUNNING)
        waiter = await engine.submit(spec("noop", assets=["A"], lock_timeout=0.2))
        failed = await wait_state(engine, waiter.id, {S.FAILED})
        assert failed.error is not None and failed.error.code == "lock-timeout"
        gate.write_text("go")
        await wait_state(engine, holder.id, S.COMPLETED)
        assert (await engine.locks_info()) == []


async def test_a_job_without_assets_makes_no_lock_request(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path))
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        plain = await engine.submit(spec("record", params={"log": str(log), "gate": str(gate)}))
        await wait_state(engine, plain.id, S.RUNNING)
        assert (engine.locks.holder_count, engine.locks.waiting_count) == (0, 0)
        locked = await engine.submit(
            spec("record", assets=["A"], params={"log": str(log), "gate": str(gate)})
        )
        await wait_state(engine, locked.id, S.RUNNING)
        assert engine.locks.holds(locked.id) and not engine.locks.holds(plain.id)
        assert engine.locks.holder_count == 1
        gate.write_text("go")
        await wait_all(engine, [plain.id, locked.id])
        assert (engine.locks.holder_count, engine.locks.waiting_count) == (0, 0)


async def test_full_queue_leaves_jobs_pending_admitted_by_priority(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path), workers=1, run_queue_size=2)
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        blocker = await engine.submit(spec("record", params={"log": str(log), "gate": str(gate)}))
        await wait_state(engine, blocker.id, S.RUNNING)
        jobs = [
            await engine.submit(spec("recordhold", priority=p, params={"log": str(log), "hold": 0}))
            for p in (0, 0, 1, 5, 3)
        ]
        states = [(await engine.get_job(j.id)).state for j in jobs]
        assert states == [S.QUEUED, S.QUEUED, S.PENDING, S.PENDING, S.PENDING]
        assert engine.queue_info()["pending"] == 3
        gate.write_text("go")
        await wait_all(engine, [j.id for j in jobs])
    order = [
        json.loads(line)["job"]
        for line in log.read_text().splitlines()
        if json.loads(line)["ev"] == "start"
    ]
    assert order[0] == blocker.id
    admitted = [j for j in order if j in {jobs[2].id, jobs[3].id, jobs[4].id}]
    assert admitted == [jobs[3].id, jobs[4].id, jobs[2].id]  # priority 5, 3, then 1


async def test_job_timeout_ends_timed_out(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path))
    async with running_engine(config) as engine:
        job = await engine.submit(spec("hang", params={"marker": ""}, timeout=0.3))
        done = await wait_state(engine, job.id, {S.TIMED_OUT, S.FAILED})
        assert done.state == S.TIMED_OUT
        assert done.error is not None and done.error.code == "timeout"


async def test_restart_reruns_everything_and_delete_keeps_audit(config, tmp_path) -> None:
    counter = tmp_path / "count"
    async with running_engine(config) as engine:
        job = await engine.submit(spec("flaky", params={"counter": str(counter), "n": 10}))
        await wait_state(engine, job.id, S.FAILED)
        await engine.operate(job.id, "restart")
        again = await wait_state(engine, job.id, {S.FAILED, S.COMPLETED})
        assert again.state == S.FAILED
        assert counter.read_text() == "6"
        new = await engine.operate(job.id, "resubmit")
        assert new is not None and new.id != job.id
        await wait_state(engine, new.id, {S.FAILED, S.COMPLETED})
        assert counter.read_text() == "9"  # the new job ran its own three attempts
        assert await engine.operate(job.id, "delete") is None
        with pytest.raises(NotFound):
            await engine.get_job(job.id)
        history = await engine.store.load_history(job.id)
        assert history[-1].cause == "deleted"


async def test_pause_and_resume_of_a_future_job_keeps_its_start_time(config) -> None:
    async with running_engine(config) as engine:
        start = engine.clock() + 3600
        job = await engine.submit(spec("noop", start_at=start))
        assert job.state == S.CONFIRMED
        await engine.operate(job.id, "pause")
        resumed = await engine.operate(job.id, "resume")
        assert resumed is not None and resumed.state == S.CONFIRMED
        assert resumed.due_at == start  # resume does not make a future job due now
        assert engine.queue_info()["queued"] == []


async def test_submit_returns_the_job_with_its_history(config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("noop", state=S.DRAFT))
        assert [(h.from_state, h.to_state) for h in job.history] == [(None, S.DRAFT)]
        stored = await engine.get_job(job.id)
        assert [(h.from_state, h.to_state) for h in stored.history] == [(None, S.DRAFT)]


async def test_drain_lets_the_running_job_finish_and_starts_nothing_new(tmp_path: Path) -> None:
    config = make_config(tmp_path, _flows(tmp_path), workers=1)
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        first = await engine.submit(spec("record", params={"log": str(log), "gate": str(gate)}))
        await wait_state(engine, first.id, S.RUNNING)
        second = await engine.submit(spec("noop"))
        assert second.state == S.QUEUED
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.drain, 30.0)
            await wait_until(lambda: not engine.accepting)
            gate.write_text("go")
        assert (await engine.get_job(first.id)).state == S.COMPLETED
        assert (await engine.get_job(second.id)).state == S.QUEUED
    async with running_engine(config) as engine:
        assert (await wait_state(engine, second.id, S.COMPLETED)).state == S.COMPLETED


@pytest.mark.parametrize(
    "changes",
    [
        {"postroll": 1.9e211},
        {"preroll": -1.0},
        {"timeout": 1.7e308},
        {"lock_timeout": 0.0},
        {"start_at": 1e15},
        {"start_at": -5.0},
    ],
)
async def test_absurd_times_and_durations_are_refused(config, changes) -> None:
    async with running_engine(config) as engine:
        with pytest.raises(ValidationError):
            await engine.submit(spec("noop", **changes))
        job = await engine.submit(spec("noop", state=S.DRAFT))
        with pytest.raises(ValidationError):
            await engine.edit(job.id, changes)
        assert (await engine.get_job(job.id)).spec == job.spec  # nothing stored changed


async def test_a_backlog_of_due_jobs_larger_than_one_read_all_run(tmp_path: Path) -> None:
    # Restart long after 1,200 jobs fell due: the due timer reads them 500 at a time.
    config = make_config(tmp_path, _flows(tmp_path), workers=8, run_queue_size=300)
    t0 = 2_000_000_000.0
    async with running_engine(config, clock=lambda: t0) as engine:
        ids = [
            (await engine.submit(spec("noop", start_at=t0 + 10 + i / 1000))).id for i in range(1200)
        ]
        assert {(await engine.get_job(i)).state for i in ids[:3]} == {S.CONFIRMED}
    async with running_engine(config, clock=lambda: t0 + 3600) as engine:
        jobs = await wait_all(engine, ids, timeout=120)
    assert {job.state for job in jobs} == {S.COMPLETED}


async def test_an_operation_on_a_job_changed_meanwhile_is_decided_on_its_new_state(
    config,
) -> None:
    """The job changes state between the operation's read and its guarded write (on a
    cluster: the node's recovery of a job it has just taken over turns its ``running``
    into ``queued``): the operation is decided again on the job as it is now, not refused
    in the name of a state that allows it."""
    async with running_engine(config) as engine:
        job = await engine.submit(spec("noop", start_at=4102444800.0))  # due in 2100
        store = engine._ctx.store
        load_job = store.load_job
        meanwhile: list[str] = []

        async def load_then_change(job_id: int, **kw):  # type: ignore[no-untyped-def]
            found = await load_job(job_id, **kw)
            if not meanwhile:
                meanwhile.append("pause")
                await engine.operate(job_id, "pause")  # after the read, before the write
            return found

        store.load_job = load_then_change
        try:
            canceled = await engine.operate(job.id, "cancel")
        finally:
            store.load_job = load_job
    assert meanwhile == ["pause"]
    assert canceled is not None and canceled.state == S.CANCELED
    assert [h.to_state for h in canceled.history][-2:] == [S.PAUSED, S.CANCELED]
