"""Batch operations in one process: the real engine on a real SQLite file, real plugins.

A batch's jobs that go one way with no run to stop are written set-wise
(``Store.transition_many``); these tests hold that path to what each job's own
operation does: the run queue, pending, lock waits, bookings, events and refusals.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from jobd.config import Config, ResourceConfig
from jobd.core.errors import InvalidTransition, NotFound
from jobd.core.events import JobEvent
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.store.sqlite.store import SqliteStore
from tests.enginekit import make_config, running_engine, spec, step, wait_state, workflow

S = JobState
#: A start far enough ahead that no booking of these tests becomes due while they run.
T = time.time() + 100_000


def _config(tmp: Path, **daemon: Any) -> Config:
    flows = [
        workflow("noop", step("a", "t-noop")),
        workflow(
            "gated", step("g", "t-record", params={"log": str(tmp / "log"), "gate": "{gate}"})
        ),
    ]
    resources = {"studio": ResourceConfig(name="studio", capacity=1)}
    return make_config(tmp, flows, resources=resources, **daemon)


async def _states(engine: Engine, ids: list[int]) -> dict[int, JobState]:
    return {i: (await engine.get_job(i)).state for i in ids}


async def test_a_batch_cancel_of_jobs_not_running_is_written_set_wise(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with running_engine(_config(tmp_path, workers=2, run_queue_size=5)) as engine:
        holder = await engine.submit(spec("gated", assets=["tape"], params={"gate": str(gate)}))
        await wait_state(engine, holder.id, S.RUNNING)
        waiter = await engine.submit(spec("gated", assets=["tape"], params={"gate": str(gate)}))
        await wait_state(engine, waiter.id, S.WAITING_FOR_LOCK)
        other = await engine.submit(spec("gated", params={"gate": str(gate)}))
        await wait_state(engine, other.id, S.RUNNING)  # both workers busy from here
        line = [(await engine.submit(spec("noop"))).id for _ in range(40)]
        booked = await engine.submit(spec("noop", start_at=T, end_at=T + 100, resources=["studio"]))
        draft = await engine.submit(spec("noop", state=S.DRAFT))
        ids = [waiter.id, *line, booked.id, draft.id]
        before = await _states(engine, ids)
        assert Counter(before.values()) == {
            S.PENDING: 35,
            S.QUEUED: 5,
            S.WAITING_FOR_LOCK: 1,
            S.CONFIRMED: 1,
            S.DRAFT: 1,
        }
        events: list[JobEvent] = []
        engine.add_listener(events.append)
        store = engine.store
        assert isinstance(store, SqliteStore)
        units = store.units
        outcome = await engine.operate_many([*ids, 10**6], "cancel", actor="test")
        # One write per from-state, not one per job (42 jobs, 5 states).
        assert store.units - units <= 5
        assert outcome.done == ids
        assert [(i, type(e)) for i, e in outcome.refused] == [(10**6, NotFound)]
        assert set((await _states(engine, ids)).values()) == {S.CANCELED}
        told = [(e.job_id, e.from_state, e.to_state, e.cause, e.actor) for e in events]
        assert told == [(i, before[i], S.CANCELED, "canceled", "test") for i in ids]
        last = (await engine.get_job(line[0])).history[-1]
        assert (last.from_state, last.to_state, last.cause, last.actor) == (
            before[line[0]],
            S.CANCELED,
            "canceled",
            "test",
        )
        # Out of the queue, pending and the lock's queue; the booking's slot is free again.
        queue = engine.queue_info()
        assert (queue["queued"], queue["pending"], queue["waiting_for_lock"]) == ([], 0, [])
        locks = await engine.locks_info()
        assert [(a["asset"], a["waiters"]) for a in locks] == [("tape", [])]
        assert (await engine.get_job(booked.id)).reservations == []
        again = await engine.submit(spec("noop", start_at=T, end_at=T + 100, resources=["studio"]))
        assert [r.resource for r in again.reservations] == ["studio"]
        # The line still works: the running jobs end, a new job runs.
        gate.write_text("go")
        after = await engine.submit(spec("noop"))
        await wait_state(engine, after.id, S.COMPLETED)
        for job_id in (holder.id, other.id):
            await wait_state(engine, job_id, S.COMPLETED)
        assert set((await _states(engine, ids)).values()) == {S.CANCELED}


async def test_a_job_changed_before_the_set_write_is_decided_again_alone(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with running_engine(_config(tmp_path, workers=1)) as engine:
        holder = await engine.submit(spec("gated", params={"gate": str(gate)}))
        await wait_state(engine, holder.id, S.RUNNING)
        paused, ended, kept = [(await engine.submit(spec("noop"))).id for _ in range(3)]
        assert set((await _states(engine, [paused, ended, kept])).values()) == {S.QUEUED}
        # Another writer (a cluster's other node, say) moves two of them behind this
        # engine's back: it still holds them as queued.
        store, now = engine.store, time.time()
        for job_id, target in ((paused, S.PAUSED), (ended, S.CANCELED)):
            unit = store.changes().transition(job_id, S.QUEUED, target, now, "elsewhere", "x")
            await store.commit(unit)
        outcome = await engine.operate_many([paused, ended, kept], "cancel", actor="test")
        assert outcome.done == [paused, kept]  # paused: canceled from there, as it is now
        [(refused, error)] = outcome.refused
        assert refused == ended and isinstance(error, InvalidTransition)
        assert error.message == (
            f"job {ended}: cannot cancel a job in state canceled "
            "(allowed in canceled: resubmit, invoice-ready, delete)"
        )
        history = [
            (h.from_state, h.to_state, h.cause) for h in (await engine.get_job(paused)).history
        ]
        assert history[-2:] == [
            (S.QUEUED, S.PAUSED, "elsewhere"),
            (S.PAUSED, S.CANCELED, "canceled"),
        ]
        assert (await engine.get_job(ended)).history[-1].cause == "elsewhere"
        gate.write_text("go")
        await wait_state(engine, holder.id, S.COMPLETED)


async def test_batch_pause_resume_and_the_plain_operations(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with running_engine(_config(tmp_path, workers=1, run_queue_size=3)) as engine:
        holder = await engine.submit(spec("gated", params={"gate": str(gate)}))
        await wait_state(engine, holder.id, S.RUNNING)
        line = [(await engine.submit(spec("noop"))).id for _ in range(8)]  # 3 queued, 5 pending
        future = (await engine.submit(spec("noop", start_at=T))).id
        paused = await engine.operate_many([holder.id, *line], "pause", actor="test")
        # The running one is paused by its own handler (its step stopped), the rest together.
        assert paused.done == [holder.id, *line] and paused.refused == []
        assert set((await _states(engine, [holder.id, *line])).values()) == {S.PAUSED}
        queue = engine.queue_info()
        assert (queue["queued"], queue["pending"], queue["running"]) == ([], 0, [])
        assert (await engine.operate_many([future], "unconfirm", actor="test")).done == [future]
        assert (await engine.get_job(future)).state == S.TENTATIVE
        gate.write_text("go")
        resumed = await engine.operate_many([holder.id, *line], "resume", actor="test")
        assert resumed.done == [holder.id, *line]
        for job_id in (holder.id, *line):
            await wait_state(engine, job_id, S.COMPLETED)
        canceled = await engine.operate_many([future, line[0]], "cancel", actor="test")
        assert canceled.done == [future] and [i for i, _ in canceled.refused] == [line[0]]
        ready = await engine.operate_many([future, line[0]], "invoice-ready", actor="test")
        assert ready.done == [future, line[0]]
        billed = await engine.operate_many([future, line[0]], "invoiced", actor="test")
        assert billed.done == [future, line[0]]
        assert set((await _states(engine, [future, line[0]])).values()) == {S.INVOICED}


async def test_pending_jobs_canceled_behind_a_full_queue_are_counted_out(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with running_engine(_config(tmp_path, workers=1, run_queue_size=2)) as engine:
        holder = await engine.submit(spec("gated", params={"gate": str(gate)}))
        await wait_state(engine, holder.id, S.RUNNING)
        queued = [(await engine.submit(spec("noop"))).id for _ in range(2)]
        pending = [(await engine.submit(spec("noop"))).id for _ in range(3)]
        assert engine.queue_info()["pending"] == 3
        assert (await engine.operate_many(pending, "cancel", actor="test")).done == pending
        # The queue is still full, so nothing was admitted that would have recounted pending.
        queue = engine.queue_info()
        assert (queue["queued"], queue["pending"]) == (queued, 0)
        gate.write_text("go")
        for job_id in (holder.id, *queued):
            await wait_state(engine, job_id, S.COMPLETED)
        assert set((await _states(engine, pending)).values()) == {S.CANCELED}
