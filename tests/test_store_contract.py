"""The store contract (jobd/store/contract.py), held against every backend.

Each test opens a real store of every backend in ``BACKENDS`` (SQLite today: a
real file and its writer process; PostgreSQL adds itself here) and checks one
promise of the contract's docstrings through the contract's own methods only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from jobd.core.errors import StoreError
from jobd.core.models import ErrorOverlay, Job, JobSpec, Reservation, Step
from jobd.core.states import JobState, StepState
from jobd.store import GuardFailed, JobFilter, Store
from jobd.store.postgres import open_store as open_postgres
from jobd.store.sqlite import open_store as open_sqlite

S = JobState
#: Every backend: a name, and how to open a fresh store of it in a test's directory.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Store]]] = {
    "sqlite": lambda request: open_sqlite(
        request.getfixturevalue("tmp_path") / "jobd.db", synchronous="normal"
    ),
    # A fresh database on a real server (tests/pgserver.py): never skipped.
    "postgres": lambda request: open_postgres(request.getfixturevalue("pg_url")),
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async with BACKENDS[request.param](request) as opened:
        assert isinstance(opened, Store)
        yield opened


def _job(job_id: int, state: JobState = S.CONFIRMED, **spec: Any) -> Job:
    due = spec.pop("due_at", 100.0)
    return Job(
        id=job_id,
        spec=JobSpec(workflow="wf", **spec),
        state=state,
        created_at=10.0,
        updated_at=10.0,
        due_at=due,
    )


def _step(job_id: int, idx: int = 0, **kw: Any) -> Step:
    kw.setdefault("name", f"s{idx}")
    return Step(job_id=job_id, idx=idx, action="noop", params={"a": idx}, **kw)


async def _add(store: Store, *jobs: Job, steps: int = 1) -> None:
    unit = store.changes()
    for job in jobs:
        unit.insert_job(job)
        for idx in range(steps):
            unit.insert_step(_step(job.id, idx))
        unit.record_history(job.id, 10.0, None, job.state, "submitted", "test")
    await store.commit(unit)


async def test_a_stored_job_reads_back_whole(store: Store) -> None:
    spec = JobSpec(
        workflow="wf",
        name="n",
        params={"k": [1, "two"]},
        assets=("a",),
        shared_assets=("b",),
        resources=("r",),
        pools=("p",),
        start_at=50.0,
        end_at=60.0,
        preroll=1.0,
        postroll=2.0,
        priority=-5,
        timeout=3.0,
        lock_timeout=4.0,
        state=S.TENTATIVE,
        schedule="nightly",
    )
    job = Job(id=7, spec=spec, state=S.TENTATIVE, created_at=1.0, updated_at=2.0, due_at=49.0)
    job.error = ErrorOverlay("not-confirmed", "late", 3.0)
    res = Reservation(7, "r", 49.0, 62.0, "p")
    unit = store.changes().insert_job(job).insert_step(_step(7)).reserve(res)
    await store.commit(unit.record_history(7, 1.0, None, S.TENTATIVE, "submitted", "t"))
    got = await store.load_job(7)
    assert got is not None
    assert (got.spec, got.state, got.due_at, got.error) == (spec, S.TENTATIVE, 49.0, job.error)
    assert (got.created_at, got.updated_at) == (1.0, 2.0)
    assert got.steps == [_step(7)]
    assert got.reservations == [res]
    assert [(h.from_state, h.to_state, h.cause) for h in got.history] == [
        (None, S.TENTATIVE, "submitted")
    ]
    assert (await store.load_job(7, full=False)).history == []  # type: ignore[union-attr]
    assert await store.load_job(8) is None


async def test_a_transition_is_guarded_by_the_state_it_was_written_for(store: Store) -> None:
    await _add(store, _job(1))
    overlay = ErrorOverlay("interrupted", "x", 5.0)
    unit = store.changes().transition(
        1, S.CONFIRMED, S.QUEUED, 20.0, "due", "t", error=overlay, due_at=30.0
    )
    await store.commit(unit)
    job = await store.load_job(1)
    assert job is not None
    assert (job.state, job.updated_at, job.error, job.due_at) == (S.QUEUED, 20.0, overlay, 30.0)
    stale = store.changes().transition(1, S.CONFIRMED, S.CANCELED, 21.0, "x", "t", error=None)
    stale.append_log(1, 21.0, None, "info", "not kept").release(1)
    with pytest.raises(GuardFailed):
        await store.commit(stale)
    job = await store.load_job(1)
    assert job is not None
    assert (job.state, job.error) == (S.QUEUED, overlay)  # nothing of the unit applied
    assert [(h.from_state, h.to_state, h.cause, h.actor) for h in job.history] == [
        (None, S.CONFIRMED, "submitted", "test"),
        (S.CONFIRMED, S.QUEUED, "due", "t"),
    ]
    assert await store.job_log(1, 0, 10) == []
    with pytest.raises(GuardFailed):  # a job that does not exist fails its guard too
        await store.commit(store.changes().transition(99, S.QUEUED, S.RUNNING, 1.0, "x", "t"))


async def test_keep_leaves_fields_and_none_clears_them(store: Store) -> None:
    await _add(store, _job(1))
    overlay = ErrorOverlay("booking-invalid", "gone", 5.0)
    await store.commit(store.changes().set_error(1, overlay, 6.0))
    await store.commit(store.changes().transition(1, S.CONFIRMED, S.PAUSED, 7.0, "x", "t"))
    job = await store.load_job(1)
    assert job is not None
    assert (job.state, job.error, job.due_at) == (S.PAUSED, overlay, 100.0)
    await store.commit(
        store.changes().transition(1, S.PAUSED, S.CONFIRMED, 8.0, "x", "t", error=None)
    )
    job = await store.load_job(1)
    assert job is not None
    assert (job.state, job.error, job.updated_at) == (S.CONFIRMED, None, 8.0)


async def test_a_failed_unit_leaves_the_others_of_its_batch(store: Store) -> None:
    await _add(store, _job(1), _job(2))
    good = store.changes().transition(1, S.CONFIRMED, S.QUEUED, 9.0, "x", "t")
    bad = store.changes().transition(2, S.RUNNING, S.COMPLETED, 9.0, "x", "t")
    also = store.changes().append_log(1, 9.0, None, "info", "kept")
    results = await asyncio.gather(
        store.commit(good), store.commit(bad), store.commit(also), return_exceptions=True
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], GuardFailed)
    states = await store.job_states([1, 2])
    assert states == {1: ("wf-1", S.QUEUED), 2: ("wf-2", S.CONFIRMED)}
    assert [line["message"] for line in await store.job_log(1, 0, 10)] == ["kept"]


async def test_a_unit_that_cannot_be_applied_is_refused_whole(store: Store) -> None:
    await _add(store, _job(1))
    unit = store.changes().append_log(1, 1.0, None, "info", "never").insert_job(_job(1))
    with pytest.raises(StoreError):
        await store.commit(unit)
    assert await store.job_log(1, 0, 10) == []
    await store.commit(store.changes().append_log(1, 2.0, None, "info", "after"))
    assert len(await store.job_log(1, 0, 10)) == 1


async def test_steps_are_recorded_reset_and_interrupted(store: Store) -> None:
    await _add(store, _job(1), steps=3)
    step = _step(1, 0, state=StepState.COMPLETED, attempts=2, started_at=1.0, ended_at=2.0)
    step.outputs, step.error, step.pgid = {"out": 1}, "soft", 4242
    await store.commit(store.changes().record_step(step).set_step_pgid(1, 1, 777))
    steps = await store.load_steps(1)
    assert steps[0] == step
    assert steps[1].pgid == 777
    unit = store.changes().reset_step(1, 0)
    unit.interrupt_step(1, 1, "interrupted", retry=True, at=5.0)
    unit.interrupt_step(1, 2, "no attempts left", retry=False, at=5.0)
    await store.commit(unit)
    first, second, third = await store.load_steps(1)
    assert first == _step(1, 0)
    assert (second.state, second.error, second.pgid) == (StepState.QUEUED, "interrupted", None)
    assert (third.state, third.error, third.ended_at) == (StepState.FAILED, "no attempts left", 5.0)


async def test_an_edit_redefines_spec_and_steps_and_clears_the_overlay(store: Store) -> None:
    await _add(store, _job(1, start_at=50.0, resources=("r",)), steps=2)
    res = Reservation(1, "r", 50.0, 50.0)
    await store.commit(
        store.changes().reserve(res).set_error(1, ErrorOverlay("booking-invalid", "x", 1.0), 1.0)
    )
    spec = JobSpec(workflow="wf", name="renamed", priority=7, start_at=80.0, resources=("r",))
    await store.commit(store.changes().redefine_job(1, spec, 75.0, [_step(1, 0, name="only")]))
    job = await store.load_job(1)
    assert job is not None
    assert (job.spec, job.due_at, job.error, job.name) == (spec, 75.0, None, "renamed")
    assert [s.name for s in job.steps] == ["only"]
    assert job.reservations == [res]  # untouched: release and reserve are intents of their own
    assert (await store.job_states([1]))[1] == ("renamed", S.CONFIRMED)


async def test_delete_removes_the_job_but_keeps_its_history(store: Store) -> None:
    await _add(store, _job(1), _job(2))
    await store.commit(
        store.changes().reserve(Reservation(1, "r", 1.0, 2.0)).append_log(1, 1.0, None, "i", "m")
    )
    with pytest.raises(GuardFailed):
        await store.commit(store.changes().delete_job(1, S.RUNNING))
    assert await store.load_job(1) is not None
    deleting = store.changes().delete_job(1, S.CONFIRMED)
    await store.commit(deleting.record_history(1, 3.0, S.CONFIRMED, None, "deleted", "t"))
    assert await store.load_job(1) is None
    assert await store.load_steps(1) == []
    assert await store.load_reservations(1) == []
    assert await store.job_log(1, 0, 10) == []
    assert [h.cause for h in await store.load_history(1)] == ["submitted", "deleted"]
    await store.commit(store.changes().delete_job(2, S.CONFIRMED))
    assert await store.max_job_id() == 2  # ids of deleted jobs are not handed out again


async def test_overlays_progress_and_errors_by_code(store: Store) -> None:
    await _add(store, _job(1), _job(2))
    first = ErrorOverlay("not-confirmed", "first", 1.0)
    await store.commit(store.changes().set_error(1, first, 1.0, only_if_clear=True))
    second = ErrorOverlay("not-confirmed", "second", 2.0)
    await store.commit(store.changes().set_error(1, second, 2.0, only_if_clear=True))
    await store.commit(store.changes().set_error(2, ErrorOverlay("booking-invalid", "b", 1.0), 3.0))
    store.commit_nowait(store.changes().set_progress(2, 42.5, "half"))
    await store.flush()
    one, two = await store.load_jobs([1, 2])
    assert one.error == first
    assert (two.progress, two.progress_message, two.updated_at) == (42.5, "half", 3.0)
    assert await store.jobs_with_error("not-confirmed") == [1]
    assert await store.jobs_with_error("booking-invalid") == [2]


async def test_reservations_stream_by_resource_and_by_job(store: Store) -> None:
    await _add(store, _job(1), _job(2))
    unit = store.changes()
    for res in (
        Reservation(2, "b", 5.0, 6.0),
        Reservation(1, "b", 1.0, 2.0),
        Reservation(2, "a", 9.0, 10.0, "p"),
    ):
        unit.reserve(res)
    await store.commit(unit)
    seen: list[Any] = []
    await store.read_reservations(lambda by_res, by_job: seen.extend([list(by_res), list(by_job)]))
    by_resource, by_job = (list(map(tuple, rows)) for rows in seen)
    assert by_resource == [
        (2, "a", 9.0, 10.0, "p"),
        (1, "b", 1.0, 2.0, None),
        (2, "b", 5.0, 6.0, None),
    ]
    assert [row[0] for row in by_job] == [1, 2, 2]
    await store.commit(store.changes().release(2).release(3))
    assert await store.load_reservations(2) == []
    assert await store.load_reservations(1) == [Reservation(1, "b", 1.0, 2.0)]


async def test_log_lines_page_by_sequence(store: Store) -> None:
    await _add(store, _job(1))
    for i in range(5):
        store.commit_nowait(store.changes().append_log(1, float(i), "s0", "info", f"m{i}"))
    await store.flush()
    lines = await store.job_log(1, 0, 3)
    assert [line["message"] for line in lines] == ["m0", "m1", "m2"]
    rest = await store.job_log(1, lines[-1]["seq"], 10)
    assert [line["message"] for line in rest] == ["m3", "m4"]
    assert rest[0]["step"] == "s0" and rest[0]["level"] == "info"


async def test_firings_are_counted_and_kept(store: Store) -> None:
    await store.commit(store.changes().record_firing("s", 100.0, None))
    assert (await store.schedule_rows())["s"] == {
        "last_fire_at": 100.0,
        "last_job_id": None,
        "missed": 0,
        "skipped": 0,
        "paused_at": None,
    }
    unit = store.changes().record_firing("s", 50.0, "missed", reason="down", at=1.0)
    await store.commit(unit.record_firing("s", 200.0, "skipped", reason="busy", at=2.0))
    await store.commit(store.changes().record_firing("s", 300.0, "fired", job_id=9, at=3.0))
    row = (await store.schedule_rows())["s"]
    assert row == {
        "last_fire_at": 300.0,
        "last_job_id": 9,
        "missed": 1,
        "skipped": 1,
        "paused_at": None,
    }
    events = await store.schedule_events("s", 2)
    assert [(e["kind"], e["fire_time"], e["job_id"]) for e in events] == [
        ("fired", 300.0, 9),
        ("skipped", 200.0, None),
    ]
    assert await store.schedule_events("other") == []


async def test_what_is_due_and_when_to_look_again(store: Store) -> None:
    await _add(
        store,
        _job(1, due_at=5.0),
        _job(2, due_at=3.0),
        _job(3, due_at=50.0),
        _job(4, S.TENTATIVE, start_at=8.0, due_at=8.0),
        _job(5, S.DRAFT, start_at=30.0, due_at=30.0),
        _job(6, S.PAUSED, due_at=1.0),
    )
    plan = await store.load_due(10.0, 10)
    assert [job.id for job in plan.due] == [2, 1]
    assert plan.due[0].steps == [_step(2)]
    assert plan.unconfirmed_started == [4]
    assert plan.next_wake == 30.0
    assert [job.id for job in (await store.load_due(10.0, 1)).due] == [2]
    await store.commit(store.changes().set_error(5, ErrorOverlay("x", "y", 1.0), 1.0))
    assert (await store.load_due(10.0, 10)).next_wake == 50.0


async def test_pending_jobs_come_by_priority_then_due_time(store: Store) -> None:
    await _add(
        store,
        _job(1, S.PENDING, due_at=5.0),
        _job(2, S.PENDING, due_at=1.0),
        _job(3, S.PENDING, priority=10, due_at=9.0),
        _job(4, S.QUEUED, priority=99, due_at=0.0),
        _job(5, S.PENDING, due_at=1.0),
    )
    assert await store.pending_jobs(10) == [3, 2, 5, 1]
    assert await store.pending_jobs(2) == [3, 2]
    assert await store.count_state(S.PENDING) == 4


async def test_lists_and_many_jobs(store: Store) -> None:
    jobs = [
        _job(i, S.QUEUED if i % 3 == 0 else S.CONFIRMED, due_at=1000.0 - i) for i in range(1, 1201)
    ]
    await _add(store, *jobs, steps=1)
    ids = [*range(1200, 0, -7), 5000]
    loaded = await store.load_jobs(ids)  # more ids than one statement may carry
    assert [job.id for job in loaded] == ids[:-1]
    assert all(len(job.steps) == 1 for job in loaded)
    page = await store.list_jobs(JobFilter(states=(S.QUEUED,)), 3, None)
    assert [job.id for job in page] == [1200, 1197, 1194]
    assert [job.id for job in await store.list_jobs(JobFilter(), 2, 1194)] == [1193, 1192]
    assert (await store.match_ids(JobFilter(states=(S.QUEUED,)), 2)) == [3, 6]
    assert all(job.steps == [] for job in page)
    queued = await store.jobs_in_states([S.QUEUED])
    assert [job.id for job in queued][:2] == [1200, 1197]  # by due time
    assert len(queued) == 400
    assert len(await store.job_states(list(range(1, 1300)))) == 1200
    assert await store.max_job_id() == 1200


async def test_a_run_start_and_a_schedule_pause_are_kept(store: Store) -> None:
    await _add(store, _job(1))
    await store.commit(store.changes().set_run_started(1, 12.5))
    job = await store.load_job(1)
    assert job is not None and job.run_started_at == 12.5
    await store.commit(store.changes().set_run_started(1, None))
    assert (await store.load_jobs([1]))[0].run_started_at is None
    await store.commit(store.changes().set_schedule_paused("s", 40.0, 40.0, "cli:alice"))
    assert (await store.schedule_rows())["s"]["paused_at"] == 40.0
    await store.commit(store.changes().set_schedule_paused("s", None, 50.0, "cli:bob"))
    assert (await store.schedule_rows())["s"]["paused_at"] is None
    events = await store.schedule_events("s")
    assert [(e["kind"], e["reason"]) for e in events] == [
        ("resumed", "resumed by cli:bob"),
        ("paused", "paused by cli:alice"),
    ]


async def test_commit_soon_answers_by_callback_in_the_order_of_the_units(store: Store) -> None:
    await _add(store, _job(1), _job(2))
    answers: list[tuple[str, BaseException | None]] = []

    def done(name: str) -> Callable[[BaseException | None], None]:
        return lambda exc: answers.append((name, exc))

    good = store.changes().transition(1, S.CONFIRMED, S.QUEUED, 9.0, "x", "t")
    store.commit_soon(good, done("a"))
    stale = store.changes().transition(2, S.RUNNING, S.COMPLETED, 9.0, "x", "t")
    store.commit_soon(stale.append_log(2, 9.0, None, "info", "not kept"), done("b"))
    assert answers == []  # never before commit_soon returns
    await store.commit(store.changes().append_log(1, 9.5, None, "info", "after"))
    # commit returned: the units queued before it were answered first, each once.
    assert [name for name, _ in answers] == ["a", "b"]
    assert answers[0][1] is None and isinstance(answers[1][1], GuardFailed)
    states = await store.job_states([1, 2])
    assert states == {1: ("wf-1", S.QUEUED), 2: ("wf-2", S.CONFIRMED)}
    assert await store.job_log(2, 0, 10) == []


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_commit_soon_on_a_closed_store_answers_with_the_error(
    backend: str, request: pytest.FixtureRequest
) -> None:
    async with BACKENDS[backend](request) as closed:
        pass
    told = asyncio.Event()
    answers: list[BaseException | None] = []

    def done(exc: BaseException | None) -> None:
        answers.append(exc)
        told.set()

    closed.commit_soon(closed.changes().append_log(1, 1.0, None, "info", "x"), done)
    assert answers == []  # told on a later turn of the loop, never inside the call
    await asyncio.wait_for(told.wait(), 10)
    assert len(answers) == 1 and isinstance(answers[0], StoreError)


async def test_many_jobs_move_set_wise_each_guarded_and_whole(store: Store) -> None:
    # More ids than one SQLite statement may bind, some in another state, one twice, one
    # unknown: each job that is in the from-state moves with its history row and release.
    await _add(store, *(_job(i, S.PAUSED if i % 4 == 0 else S.QUEUED) for i in range(1, 1201)))
    overlay = ErrorOverlay("booking-invalid", "kept", 5.0)
    unit = store.changes().set_error(1, overlay, 10.0)
    for job_id in (1, 2, 4):
        unit.reserve(Reservation(job_id, "r", float(job_id), 50.0))
    await store.commit(unit)
    ids = [*range(1, 1201), 1, 99_999]
    moved = await store.transition_many(
        ids, S.QUEUED, S.CANCELED, 20.0, "canceled", "t", release=True
    )
    queued = [i for i in range(1, 1201) if i % 4]
    assert sorted(moved) == queued
    states = await store.job_states(list(range(1, 1201)))
    assert {i for i, (_, state) in states.items() if state == S.CANCELED} == set(queued)
    one, four = await store.load_job(1), await store.load_job(4)
    assert one is not None and four is not None
    assert (one.state, one.updated_at, one.error, one.due_at) == (S.CANCELED, 20.0, overlay, 100.0)
    assert [(h.at, h.from_state, h.to_state, h.cause, h.actor) for h in one.history[1:]] == [
        (20.0, S.QUEUED, S.CANCELED, "canceled", "t")
    ]
    assert one.reservations == [] and await store.load_reservations(2) == []
    # Not in the from-state: untouched, no history row, its reservation kept.
    assert (four.state, four.updated_at, len(four.history)) == (S.PAUSED, 10.0, 1)
    assert four.reservations == [Reservation(4, "r", 4.0, 50.0)]
    assert await store.transition_many(ids, S.QUEUED, S.CANCELED, 21.0, "again", "t") == []
    assert len(await store.load_history(2)) == 2
    resumed = await store.transition_many([4, 8], S.PAUSED, S.CONFIRMED, 30.0, "resumed", "t")
    assert sorted(resumed) == [4, 8]
    assert await store.load_reservations(4) == [Reservation(4, "r", 4.0, 50.0)]  # no release
    assert await store.transition_many([], S.PAUSED, S.CONFIRMED, 31.0, "none", "t") == []


async def test_a_set_wise_move_and_a_single_one_each_win_a_job_whole(store: Store) -> None:
    await _add(store, _job(1), _job(2), _job(3))
    single = store.changes().transition(2, S.CONFIRMED, S.QUEUED, 9.0, "due", "t")
    many, one = await asyncio.gather(
        store.transition_many([1, 2, 3], S.CONFIRMED, S.CANCELED, 9.0, "canceled", "t"),
        store.commit(single),
        return_exceptions=True,
    )
    assert isinstance(many, list) and {1, 3} <= set(many)
    # Whichever the backend applied first took job 2; the other found it changed.
    assert (2 in many) == isinstance(one, GuardFailed)
    assert one is None or isinstance(one, GuardFailed)
    history = await store.load_history(2)
    assert [h.from_state for h in history] == [None, S.CONFIRMED]
    state = (await store.job_states([2]))[2][1]
    assert state == (S.CANCELED if 2 in many else S.QUEUED) == history[-1].to_state
