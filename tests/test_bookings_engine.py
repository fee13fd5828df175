"""Bookings through the real engine: conflicts, pools, lifecycle, invoicing, overlays, reload.

A real SQLite file and the real engine; booking windows lie far in the future so
that nothing runs unless a test makes it due. Nothing sleeps: tests wait on the
engine's events.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from jobd.config import Config, PoolConfig, ResourceConfig
from jobd.core.errors import BookingConflict, InvalidTransition, ValidationError
from jobd.core.states import JobState
from jobd.engine import Engine
from tests.enginekit import (
    make_config,
    running_engine,
    spec,
    step,
    wait_state,
    workflow,
)

S = JobState
#: A start far enough ahead that no booking of these tests becomes due while they run.
T = time.time() + 100_000


def _resources(**capacities: int) -> dict[str, ResourceConfig]:
    return {name: ResourceConfig(name=name, capacity=c) for name, c in capacities.items()}


def _config(tmp: Path, **kw: Any) -> Config:
    flows = [
        workflow("noop", step("a", "t-noop")),
        workflow("hang", step("h", "t-hang")),
        workflow(
            "fails",
            step(
                "f", "t-flaky", params={"counter": str(tmp / "count"), "fail_times": 99}, retries=0
            ),
        ),
    ]
    resources = _resources(**{"studio": 1, "dual": 2, "enc-1": 1, "enc-2": 1})
    pools = {"encoders": PoolConfig(name="encoders", members=("enc-1", "enc-2"))}
    return make_config(
        tmp, flows, resources=kw.pop("resources", resources), pools=kw.pop("pools", pools), **kw
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return _config(tmp_path)


def booking(start: float, end: float, *, workflow: str = "noop", **kw: Any) -> Any:
    kw.setdefault("resources", ["studio"])
    return spec(workflow, start_at=start, end_at=end, **kw)


async def reserved(engine: Engine, job_id: int) -> list[tuple[str, float, float]]:
    """The job's reservations as the store has them."""
    job = await engine.get_job(job_id)
    return [(r.resource, r.start, r.end) for r in job.reservations]


async def test_overlap_refused_naming_the_job_touching_accepted(config: Config) -> None:
    async with running_engine(config) as engine:
        a = await engine.submit(booking(T, T + 100))
        with pytest.raises(BookingConflict) as err:
            await engine.submit(booking(T + 50, T + 150))
        assert err.value.job_ids == [a.id]
        assert err.value.status == 409
        assert f"jobs {a.id}" in err.value.message and "studio" in err.value.message
        # Half-open intervals: ending where another starts is no conflict, either side.
        after = await engine.submit(booking(T + 100, T + 200))
        before = await engine.submit(booking(T - 100, T))
        # Preroll and postroll count: the reservation is [start - preroll, end + postroll].
        touching = await engine.submit(booking(T + 210, T + 300, preroll=10))
        with pytest.raises(BookingConflict) as err:
            await engine.submit(booking(T + 211, T + 300, preroll=12))
        assert err.value.job_ids == [after.id, touching.id]
        with pytest.raises(BookingConflict) as err:
            await engine.submit(booking(T - 200, T - 100, postroll=1))
        assert err.value.job_ids == [before.id]
        assert await reserved(engine, touching.id) == [("studio", T + 200, T + 300)]
        # A refused submission leaves no job behind.
        jobs, _ = await engine.list_jobs()
        assert sorted(j.id for j in jobs) == sorted([a.id, after.id, before.id, touching.id])


async def test_capacity_two_takes_two_overlapping_bookings(config: Config) -> None:
    async with running_engine(config) as engine:
        one = await engine.submit(booking(T, T + 100, resources=["dual"]))
        two = await engine.submit(booking(T + 50, T + 150, resources=["dual"]))
        # Beside either one alone there is room; where both overlap there is none.
        await engine.submit(booking(T + 120, T + 200, resources=["dual"]))
        with pytest.raises(BookingConflict) as err:
            await engine.submit(booking(T + 60, T + 70, resources=["dual"]))
        assert err.value.job_ids == [one.id, two.id]


async def test_pool_picks_the_member_with_fewest_bookings_then_runs_out(config: Config) -> None:
    async with running_engine(config) as engine:
        # enc-1 already carries one booking elsewhere in time.
        await engine.submit(booking(T + 1000, T + 1100, resources=["enc-1"]))
        first = await engine.submit(booking(T, T + 100, resources=[], pools=["encoders"]))
        assert [(r.resource, r.pool) for r in first.reservations] == [("enc-2", "encoders")]
        second = await engine.submit(booking(T, T + 100, resources=[], pools=["encoders"]))
        assert [r.resource for r in second.reservations] == ["enc-1"]
        with pytest.raises(BookingConflict) as err:
            await engine.submit(booking(T + 10, T + 20, resources=[], pools=["encoders"]))
        assert "pool encoders" in err.value.message
        assert err.value.job_ids == sorted([first.id, second.id])
        stored = await engine.get_job(first.id)
        assert [r.to_dict()["pool"] for r in stored.reservations] == ["encoders"]


async def test_unknown_resource_and_booking_without_times_refused(config: Config) -> None:
    async with running_engine(config) as engine:
        with pytest.raises(ValidationError, match="unknown resource 'nope'"):
            await engine.submit(booking(T, T + 1, resources=["nope"]))
        with pytest.raises(ValidationError, match="needs start_at"):
            await engine.submit(spec("noop", resources=["studio"]))
        with pytest.raises(ValidationError, match="end_at is before start_at"):
            await engine.submit(booking(T, T - 1))


async def test_draft_holds_nothing_then_tentative_reserves(config: Config) -> None:
    async with running_engine(config) as engine:
        blocker = await engine.submit(booking(T, T + 100, state=S.TENTATIVE))
        assert await reserved(engine, blocker.id) == [("studio", T, T + 100)]
        draft = await engine.submit(booking(T, T + 100, state=S.DRAFT))
        assert draft.state == S.DRAFT and await reserved(engine, draft.id) == []
        assert [b["job_id"] for b in await engine.bookings(T, T + 100)] == [blocker.id]
        with pytest.raises(BookingConflict) as err:
            await engine.operate(draft.id, "tentative")
        assert err.value.job_ids == [blocker.id]
        with pytest.raises(BookingConflict):
            await engine.operate(draft.id, "confirm")
        assert (await engine.get_job(draft.id)).state == S.DRAFT
        await engine.operate(blocker.id, "cancel")
        held = await engine.operate(draft.id, "tentative")
        assert held is not None and held.state == S.TENTATIVE
        assert await reserved(engine, draft.id) == [("studio", T, T + 100)]
        # Confirm and unconfirm keep the reservation.
        confirmed = await engine.operate(draft.id, "confirm")
        assert confirmed is not None and confirmed.state == S.CONFIRMED
        assert await reserved(engine, draft.id) == [("studio", T, T + 100)]
        back = await engine.operate(draft.id, "unconfirm")
        assert back is not None and back.state == S.TENTATIVE
        assert await reserved(engine, draft.id) == [("studio", T, T + 100)]
        with pytest.raises(BookingConflict):
            await engine.submit(booking(T, T + 100))
        # State rules of SPEC §2.
        with pytest.raises(InvalidTransition, match="allowed in tentative"):
            await engine.operate(draft.id, "unconfirm")
        with pytest.raises(InvalidTransition):
            await engine.operate(draft.id, "tentative")


async def test_cancel_complete_and_fail_release_the_resource(config: Config) -> None:
    async with running_engine(config) as engine:
        # Cancel.
        a = await engine.submit(booking(T, T + 100))
        await engine.operate(a.id, "cancel")
        assert await reserved(engine, a.id) == []
        b = await engine.submit(booking(T, T + 100))
        await engine.operate(b.id, "cancel")
        # Complete and fail: held (tentative) until confirmed, then run at once.
        now = time.time()
        for flow, outcome in (("noop", S.COMPLETED), ("fails", S.FAILED)):
            job = await engine.submit(booking(now, now, workflow=flow, state=S.TENTATIVE))
            with pytest.raises(BookingConflict):
                await engine.submit(booking(now - 1, now + 1, state=S.TENTATIVE))
            await engine.operate(job.id, "confirm")
            done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
            assert done.state == outcome
            assert done.reservations == []
            again = await engine.submit(booking(now - 1, now + 1, state=S.TENTATIVE))
            await engine.operate(again.id, "cancel")


async def test_a_slot_freed_by_an_end_in_flight_is_booked_once_the_end_lands(
    config: Config,
) -> None:
    """A reader of the store can see a job's end before the engine has heard the writer's
    answer and freed its slots: a booking of that slot made then waits for the writes in
    flight and is checked again, instead of being refused for a job that has ended.

    Made to happen every time: once the holder's end is handed to the writer, this test
    holds the event loop (so the writer's answer stays unread) until the database file
    shows the end, then books the slot."""
    async with running_engine(config) as engine:
        store = engine.store
        now = time.time()
        holder = await engine.submit(booking(now, now, state=S.TENTATIVE))  # ends at once
        handed = anyio.Event()
        commit_soon = store.commit_soon

        def watched(changes: Any, done: Any) -> None:
            commit_soon(changes, done)
            rc = engine.active.get(holder.id)
            if rc is not None and rc.job.state == S.COMPLETED:
                handed.set()  # the holder's end is queued; it goes to the writer next

        store.commit_soon = watched  # type: ignore[method-assign]
        await engine.operate(holder.id, "confirm")
        await handed.wait()
        with sqlite3.connect(config.daemon.db_path) as db:
            deadline = time.monotonic() + 30
            while db.execute("SELECT state FROM jobs WHERE id = ?", (holder.id,)).fetchone() != (
                "completed",
            ):
                assert time.monotonic() < deadline, "the holder's end was not committed"
        assert holder.id in engine.active  # the loop has not heard the answer yet
        booked = await engine.submit(booking(now - 1, now + 1, state=S.TENTATIVE))
        assert [r.resource for r in booked.reservations] == ["studio"]
        assert (await engine.get_job(holder.id)).state == S.COMPLETED


async def test_edit_rechecks_reservations(config: Config) -> None:
    async with running_engine(config) as engine:
        a = await engine.submit(booking(T, T + 100))
        b = await engine.submit(booking(T + 200, T + 300, state=S.TENTATIVE))
        with pytest.raises(BookingConflict) as err:
            await engine.edit(b.id, {"start_at": T + 50, "end_at": T + 150})
        assert err.value.job_ids == [a.id]
        kept = await engine.get_job(b.id)
        assert (kept.spec.start_at, kept.state) == (T + 200, S.TENTATIVE)
        assert await reserved(engine, b.id) == [("studio", T + 200, T + 300)]
        # The old slot is still held in the index too.
        with pytest.raises(BookingConflict):
            await engine.submit(booking(T + 250, T + 260))
        moved = await engine.edit(b.id, {"start_at": T + 400, "end_at": T + 500})
        assert moved.state == S.TENTATIVE
        assert await reserved(engine, b.id) == [("studio", T + 400, T + 500)]
        free = await engine.submit(booking(T + 200, T + 300))
        assert [r.resource for r in free.reservations] == ["studio"]
        # Editing onto its own old slot is no conflict with itself; a pool edit rebooks.
        await engine.edit(b.id, {"end_at": T + 510})
        pooled = await engine.edit(b.id, {"resources": [], "pools": ["encoders"]})
        assert [r.resource for r in pooled.reservations] == ["enc-1"]
        # A draft's edit books nothing.
        d = await engine.submit(booking(T, T + 100, state=S.DRAFT))
        edited = await engine.edit(d.id, {"end_at": T + 120})
        assert edited.reservations == []


async def test_invoicing_ends_the_life_of_a_job(config: Config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("noop"))
        await wait_state(engine, job.id, S.COMPLETED)
        with pytest.raises(InvalidTransition, match="allowed in completed"):
            await engine.operate(job.id, "invoiced")
        ready = await engine.operate(job.id, "invoice-ready")
        assert ready is not None and ready.state == S.READY_FOR_INVOICE
        for op in ("cancel", "retry", "restart", "confirm", "pause", "delete", "invoice-ready"):
            with pytest.raises(
                InvalidTransition, match="allowed in ready-for-invoice: resubmit, invoiced"
            ):
                await engine.operate(job.id, op)
        with pytest.raises(InvalidTransition):
            await engine.edit(job.id, {"priority": 5})
        billed = await engine.operate(job.id, "invoiced")
        assert billed is not None and billed.state == S.INVOICED
        for op in ("invoiced", "invoice-ready", "cancel", "delete"):
            with pytest.raises(InvalidTransition, match="allowed in invoiced: resubmit"):
                await engine.operate(job.id, op)
        with pytest.raises(InvalidTransition):
            await engine.edit(job.id, {"name": "x"})
        assert [h.to_state for h in billed.history][-2:] == [S.READY_FOR_INVOICE, S.INVOICED]
        # A canceled booking may be invoiced too (a late cancellation is billed).
        canceled = await engine.submit(booking(T, T + 100))
        await engine.operate(canceled.id, "cancel")
        fixed = await engine.operate(canceled.id, "invoice-ready")
        assert fixed is not None and fixed.state == S.READY_FOR_INVOICE
        # Resubmit makes a new job; the invoiced one is unchanged.
        new = await engine.operate(job.id, "resubmit")
        assert new is not None and new.id != job.id
        assert (await engine.get_job(job.id)).state == S.INVOICED


async def _error_event(engine: Engine, job_id: int, code: str | None) -> None:
    """Wait for the job's overlay to become ``code`` (None: cleared), on the engine's events."""
    with anyio.fail_after(20):
        async with engine.subscribe() as events:
            job = await engine.get_job(job_id)
            while (job.error.code if job.error else None) != code:
                async for event in events:
                    if event.job_id == job_id and event.kind == "error":
                        break
                job = await engine.get_job(job_id)


async def test_tentative_job_whose_start_passes_gets_not_confirmed_and_never_runs(
    config: Config,
) -> None:
    async with running_engine(config) as engine:
        start = time.time() + 1
        job = await engine.submit(booking(start, start + 1, state=S.TENTATIVE))
        assert job.error is None
        await _error_event(engine, job.id, "not-confirmed")
        marked = await engine.get_job(job.id)
        assert marked.state == S.TENTATIVE
        assert marked.error is not None and "not confirmed" in marked.error.message
        assert [h.to_state for h in marked.history] == [S.TENTATIVE]
        assert marked.steps[0].attempts == 0
        # Moving it to a future start clears the overlay; confirming it then runs it there.
        later = time.time() + 0.5
        edited = await engine.edit(job.id, {"start_at": later, "end_at": later})
        assert edited.error is None
        await engine.operate(job.id, "confirm")
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED})
        assert done.state == S.COMPLETED and done.error is None
        # A draft submitted with a start already past carries the overlay at once.
        past = time.time() - 10
        draft = await engine.submit(booking(past, past + 1, state=S.DRAFT))
        assert draft.error is not None and draft.error.code == "not-confirmed"


async def test_confirm_with_a_future_start_clears_not_confirmed(tmp_path: Path) -> None:
    offset = [0.0]
    config = _config(tmp_path)
    async with running_engine(config, clock=lambda: time.time() + offset[0]) as engine:
        start = time.time() + 1
        job = await engine.submit(booking(start, start + 100, state=S.TENTATIVE))
        await _error_event(engine, job.id, "not-confirmed")
        # The wall clock is stepped back (NTP): the start lies ahead again.
        offset[0] = -60
        confirmed = await engine.operate(job.id, "confirm")
        assert confirmed is not None and confirmed.state == S.CONFIRMED
        assert confirmed.error is None


async def test_reload_removing_a_resource_or_pool_marks_jobs_then_restoring_clears(
    config: Config,
) -> None:
    async with running_engine(config) as engine:
        studio = await engine.submit(booking(T, T + 100, state=S.TENTATIVE))
        pooled = await engine.submit(booking(T, T + 100, resources=[], pools=["encoders"]))
        draft = await engine.submit(booking(T, T + 100, state=S.DRAFT))
        other = await engine.submit(booking(T, T + 100, resources=["dual"]))

        without_studio = dataclasses.replace(
            config, resources={k: v for k, v in config.resources.items() if k != "studio"}
        )
        warnings = await engine.reload(without_studio)
        assert any(f"job {studio.id}" in w and "studio" in w for w in warnings)
        marked = await engine.get_job(studio.id)
        assert marked.error is not None and marked.error.code == "booking-invalid"
        assert "studio" in marked.error.message and marked.state == S.TENTATIVE
        for unaffected in (pooled.id, draft.id, other.id):
            assert (await engine.get_job(unaffected)).error is None
        info = await engine.resources_info()
        assert "studio" not in [r["name"] for r in info]

        warnings = await engine.reload(config)
        assert warnings == []
        assert (await engine.get_job(studio.id)).error is None

        without_pool = dataclasses.replace(config, pools={})
        warnings = await engine.reload(without_pool)
        assert any(f"job {pooled.id}" in w and "encoders" in w for w in warnings)
        marked = await engine.get_job(pooled.id)
        assert marked.error is not None and marked.error.code == "booking-invalid"
        assert "encoders" in marked.error.message
        assert (await engine.get_job(studio.id)).error is None

        await engine.reload(config)
        assert (await engine.get_job(pooled.id)).error is None


async def test_bookings_and_resources_info(config: Config) -> None:
    async with running_engine(config) as engine:
        now = time.time()
        live = await engine.submit(booking(now, now + 3600, workflow="noop", name="live"))
        await wait_state(engine, live.id, S.RUNNING)
        later = await engine.submit(booking(T, T + 100, name="later", state=S.TENTATIVE))
        pooled = await engine.submit(booking(T, T + 100, resources=[], pools=["encoders"]))

        everything = await engine.bookings(None, None)
        assert [(b["job_id"], b["resource"]) for b in everything] == [
            (live.id, "studio"),
            (pooled.id, "enc-1"),
            (later.id, "studio"),
        ]
        first = everything[0]
        assert (first["job_name"], first["state"], first["pool"]) == ("live", "running", None)
        assert (first["start"], first["end"]) == (now, now + 3600)
        assert everything[1]["pool"] == "encoders"
        # Half-open range queries.
        assert [b["job_id"] for b in await engine.bookings(T + 100, None)] == []
        assert [b["job_id"] for b in await engine.bookings(None, T)] == [live.id]
        assert {b["job_id"] for b in await engine.bookings(T + 99, T + 200)} == {
            later.id,
            pooled.id,
        }

        info = {r["name"]: r for r in await engine.resources_info()}
        assert info["studio"]["capacity"] == 1 and info["studio"]["pools"] == []
        assert info["studio"]["current"] == [live.id]
        assert info["studio"]["upcoming"] == 1
        assert info["studio"]["bookings"] == 2
        assert info["enc-1"]["pools"] == ["encoders"] and info["enc-1"]["upcoming"] == 1
        assert info["enc-2"]["bookings"] == 0 and info["dual"]["capacity"] == 2

        await engine.operate(live.id, "stop")
        done = await wait_state(engine, live.id, S.COMPLETED)
        assert done.reservations == []
        info = {r["name"]: r for r in await engine.resources_info()}
        assert info["studio"]["current"] == [] and info["studio"]["bookings"] == 1


async def test_restart_with_a_resource_gone_marks_jobs_and_its_return_clears(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    async with running_engine(config) as engine:
        job = await engine.submit(booking(T, T + 100, state=S.TENTATIVE))
    without_studio = dataclasses.replace(
        config, resources={k: v for k, v in config.resources.items() if k != "studio"}
    )
    async with running_engine(without_studio) as engine:
        marked = await engine.get_job(job.id)
        assert marked.error is not None and marked.error.code == "booking-invalid"
        assert "studio" in marked.error.message
    async with running_engine(config) as engine:
        assert (await engine.get_job(job.id)).error is None
        with pytest.raises(BookingConflict):  # still held after both restarts
            await engine.submit(booking(T, T + 100))


async def test_retry_of_a_failed_booking_books_again(config: Config) -> None:
    async with running_engine(config) as engine:
        now = time.time()
        job = await engine.submit(booking(now, now, workflow="fails"))
        failed = await wait_state(engine, job.id, {S.FAILED, S.COMPLETED})
        assert failed.state == S.FAILED and failed.reservations == []
        taker = await engine.submit(booking(now - 1, now + 1, state=S.TENTATIVE))
        with pytest.raises(BookingConflict) as err:
            await engine.operate(job.id, "retry")
        assert err.value.job_ids == [taker.id]
        assert (await engine.get_job(job.id)).state == S.FAILED
        await engine.operate(taker.id, "cancel")
        await engine.operate(job.id, "retry")
        again = await wait_state(engine, job.id, {S.FAILED, S.COMPLETED})
        assert again.state == S.FAILED and again.reservations == []
        assert [h.to_state for h in again.history].count(S.RUNNING) == 2


SELECTOR = """
import jobd


@jobd.hookimpl
def jobd_select_resource(pool, candidates, job):
    want = job["params"].get("want")
    if want == "boom":
        raise RuntimeError("selector bug")
    return want
"""


async def test_select_resource_hook_chooses_the_pool_member(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "selector.py").write_text(SELECTOR)
    config = _config(tmp_path)
    config = dataclasses.replace(
        config,
        daemon=dataclasses.replace(
            config.daemon, plugin_dirs=(*config.daemon.plugin_dirs, plugins)
        ),
    )

    def pooled(start: float, want: str | None = None) -> Any:
        return booking(
            start,
            start + 10,
            resources=[],
            pools=["encoders"],
            params={} if want is None else {"want": want},
        )

    async with running_engine(config) as engine:
        # Default (no answer): fewest bookings, then name.
        assert [r.resource for r in (await engine.submit(pooled(T))).reservations] == ["enc-1"]
        chosen = await engine.submit(pooled(T + 100, "enc-2"))
        assert [r.resource for r in chosen.reservations] == ["enc-2"]
        # An answer that is not a free candidate (enc-2 is taken at T + 100), unknown, or
        # raising: the default, fewest bookings first (1/1, then 2/1, then 2/2), then name.
        for start, want, expected in (
            (T + 100, "enc-2", "enc-1"),
            (T + 200, "nope", "enc-2"),
            (T + 300, "boom", "enc-1"),
        ):
            job = await engine.submit(pooled(start, want))
            assert [r.resource for r in job.reservations] == [expected], want


async def test_concurrent_submissions_for_one_slot_book_it_once(config: Config) -> None:
    outcomes: list[int | str] = []

    async def attempt(engine: Engine) -> None:
        try:
            outcomes.append((await engine.submit(booking(T, T + 100))).id)
        except BookingConflict as exc:
            outcomes.append(f"conflict {exc.job_ids}")

    async with running_engine(config) as engine:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(attempt, engine)
        winners = [o for o in outcomes if isinstance(o, int)]
        assert len(winners) == 1
        assert outcomes.count(f"conflict {winners}") == 9
        assert [b["job_id"] for b in await engine.bookings(None, None)] == winners


async def test_a_restart_loads_every_booking_back_from_the_store(config: Config) -> None:
    async with running_engine(config) as engine:
        ids = [
            (
                await engine.submit(
                    booking(T + 10 * i, T + 10 * i + 5, state=S.TENTATIVE, resources=[name])
                )
            ).id
            for i in range(3)
            for name in ("dual", "studio")
        ]
        pooled = (await engine.submit(booking(T, T + 5, resources=[], pools=["encoders"]))).id
        before = await engine.bookings(None, None)
        await engine.operate(ids[1], "cancel")  # released: not loaded back
    async with running_engine(config) as engine:
        after = await engine.bookings(None, None)
        assert after == [b for b in before if b["job_id"] != ids[1]]
        assert {b["job_id"] for b in after} == {*ids, pooled} - {ids[1]}
        with pytest.raises(BookingConflict):  # the loaded ones conflict as before
            await engine.submit(booking(T + 20, T + 21))
        await engine.submit(booking(T + 1, T + 2))  # the slot released before is free
        await engine.submit(booking(T + 1, T + 2, resources=["dual"]))  # capacity 2
        with pytest.raises(BookingConflict):
            await engine.submit(booking(T + 1, T + 2, resources=["dual"]))
        await engine.operate(ids[0], "cancel")  # a loaded booking can be released
        await engine.submit(booking(T + 1, T + 2, resources=["dual"]))
