"""Pending jobs kept as placed (jobd/engine/parked.py) and admitted set-wise: the order, the
jobs beyond the limit read back, and a job that changed while pending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jobd.engine.facade
from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState
from jobd.engine.parked import Parked
from tests.enginekit import (
    make_config,
    running_engine,
    spec,
    step,
    wait_all,
    wait_state,
    wait_until,
    workflow,
)

S = JobState


def _flows() -> list:
    return [
        workflow("record", step("r", "t-record", params={"log": "{log}", "gate": "{gate}"})),
        workflow("recordhold", step("r", "t-record", params={"log": "{log}", "hold": "{hold}"})),
    ]


def _starts(log: Path) -> list[int]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line["job"] for line in lines if line["ev"] == "start"]


def test_parked_keeps_the_first_up_to_its_limit() -> None:
    parked = Parked(limit=2)
    jobs = [Job(i, JobSpec("w"), S.PENDING, 0.0, 0.0) for i in (1, 2, 3)]
    for job in jobs:
        parked.park(job)
    assert len(parked) == 2
    assert parked.take(3) is None  # over the limit: not kept (read back when admitted)
    parked.forget(1)
    assert parked.take(1) is None
    assert parked.take(2) is jobs[1]
    assert len(parked) == 0


@pytest.mark.parametrize("limit", [0, 1, 100])
async def test_pending_batch_admitted_by_priority_whatever_is_parked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """A batch into a full queue: its pending jobs run by priority, then submission order,
    whether admission takes them as parked (all), reads them all back (none), or both (2 of 6
    parked: the limit is 1 per place of the queue of 2)."""
    monkeypatch.setattr(jobd.engine.facade, "PARKED_PER_PLACE", limit)  # x run_queue_size 2
    config = make_config(tmp_path, _flows(), workers=1, run_queue_size=2)
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        blocker = await engine.submit(spec("record", params={"log": str(log), "gate": str(gate)}))
        await wait_state(engine, blocker.id, S.RUNNING)
        params = {"log": str(log), "hold": 0}
        priorities = (0, 0, 1, 5, 3, 5, 0, 1)
        jobs = await engine.submit_many(
            [spec("recordhold", priority=p, params=params) for p in priorities]
        )
        assert [j.state for j in jobs] == [S.QUEUED, S.QUEUED] + [S.PENDING] * 6
        assert engine.queue_info()["pending"] == 6
        gate.write_text("go")
        await wait_all(engine, [j.id for j in jobs])
        assert engine.queue_info()["pending"] == 0
        for job in jobs:
            history = [(h.from_state, h.to_state) for h in (await engine.get_job(job.id)).history]
            if job.state == S.PENDING:
                assert (S.PENDING, S.QUEUED) in history
    ids = [j.id for j in jobs]
    by_priority = sorted(ids[2:], key=lambda i: (-priorities[ids.index(i)], i))
    assert [i for i in _starts(log) if i in ids[2:]] == by_priority


async def test_a_pending_job_paused_and_resumed_runs_as_stored(tmp_path: Path) -> None:
    """A parked job that changes (pause, resume: a new due time) is no longer taken as it was
    parked: it is admitted once, after the job pending before it came back, and runs once."""
    config = make_config(tmp_path, _flows(), workers=1, run_queue_size=1)
    log, gate = tmp_path / "log", tmp_path / "gate"
    async with running_engine(config) as engine:
        blocker = await engine.submit(spec("record", params={"log": str(log), "gate": str(gate)}))
        await wait_state(engine, blocker.id, S.RUNNING)
        params = {"log": str(log), "hold": 0}
        queued, first, second = await engine.submit_many([spec("recordhold", params=params)] * 3)
        assert (queued.state, first.state, second.state) == (S.QUEUED, S.PENDING, S.PENDING)
        await engine.operate(first.id, "pause")
        assert engine.queue_info()["pending"] == 1
        await engine.operate(first.id, "resume")
        await wait_state(engine, first.id, S.PENDING)
        # Counted once its write landed, just after the event: polled, with a deadline.
        await wait_until(lambda: engine.queue_info()["pending"] == 2)
        gate.write_text("go")
        await wait_all(engine, [queued.id, first.id, second.id])
        job = await engine.get_job(first.id)
        moves = [(h.from_state, h.to_state) for h in job.history]
        assert moves.count((S.PENDING, S.QUEUED)) == 1
        assert (S.PENDING, S.PAUSED) in moves
    starts = _starts(log)
    assert starts == [blocker.id, queued.id, second.id, first.id]  # due time: resumed last
