"""Bookings across the nodes of a cluster (SPEC §10): PostgreSQL itself never lets a
resource be double-booked, capacity above 1 included; a refusal is the same 409
BookingConflict one node gives; each node's booking index learns the others' bookings.

Two real engines, each with its own store (its own writer connection), on one fresh
database of a real server: the "nodes" race through the database exactly as two
daemons do. Nothing sleeps: tests wait on conditions with deadlines.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import psycopg
import pytest

from jobd.config import ResourceConfig
from jobd.core.errors import BookingConflict
from jobd.core.models import Job, Reservation
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.store.postgres import open_store
from tests.enginekit import make_config, spec, step, wait_until, workflow

pytestmark = pytest.mark.anyio
#: Far enough ahead that no booking becomes due while a test runs.
T = time.time() + 100_000
#: Overlapping reservations beyond capacity, as the database holds them: a reservation
#: with more others of its resource overlapping its start than capacity allows.
OVERLOADED = """
SELECT r.resource, r.job_id, count(*) FROM reservations r JOIN reservations o
    ON o.resource = r.resource AND o.span @> r.start
 WHERE r.resource = %s GROUP BY r.resource, r.job_id, r.start HAVING count(*) > %s
"""


@asynccontextmanager
async def nodes(
    tmp: Path, url: str, count: int = 2, **capacities: int
) -> AsyncIterator[list[Engine]]:
    resources = {n: ResourceConfig(name=n, capacity=c) for n, c in capacities.items()}
    async with AsyncExitStack() as stack:
        engines = []
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        for i in range(count):
            config = make_config(
                tmp / f"node{i}", [workflow("w", step("a", "t-noop"))], resources=resources
            )
            plugins = PluginHost(config.daemon.plugin_dirs)
            plugins.load()
            store = await stack.enter_async_context(open_store(url, single=False))
            engine = Engine(config, store, plugins)
            await tg.start(engine.run)
            engines.append(engine)
        yield engines


def booking(start: float, end: float, resource: str = "studio") -> object:
    return spec("w", start_at=start, end_at=end, resources=[resource])


async def _race(
    engines: list[Engine], spans: list[tuple[float, float]], resource: str
) -> tuple[list[Job], list[BookingConflict]]:
    accepted: list[Job] = []
    refused: list[BookingConflict] = []

    async def one(engine: Engine, start: float, end: float) -> None:
        try:
            accepted.append(await engine.submit(booking(start, end, resource)))  # type: ignore[arg-type]
        except BookingConflict as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for i, (start, end) in enumerate(spans):
            tg.start_soon(one, engines[i % len(engines)], start, end)
    return accepted, refused


def _max_overlap(reservations: list[Reservation]) -> int:
    events = sorted([(r.start, 1) for r in reservations] + [(r.end, -1) for r in reservations])
    load = peak = 0
    for _, delta in events:
        load += delta
        peak = max(peak, load)
    return peak


@pytest.mark.parametrize("capacity", [1, 2])
async def test_nodes_racing_for_one_resource_never_double_book_it(
    tmp_path: Path, pg_url: str, capacity: int
) -> None:
    rnd = random.Random(capacity)
    spans = [(T + s, T + s + rnd.uniform(5, 30)) for s in (rnd.uniform(0, 60) for _ in range(60))]
    spans += [(T + 30, T + 40)] * 10  # the same span, many times at once
    async with nodes(tmp_path, pg_url, studio=capacity) as engines:
        accepted, refused = await _race(engines, spans, "studio")
        assert len(accepted) + len(refused) == len(spans)
        assert accepted and refused
        for exc in refused:
            assert exc.status == 409 and exc.code == "booking-conflict"
            assert exc.details["resource"] == "studio"
        stored = [r for job in accepted for r in job.reservations]
        assert _max_overlap(stored) <= capacity
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT job_id FROM reservations").fetchall()
            assert sorted(r[0] for r in rows) == sorted(job.id for job in accepted)
            assert conn.execute(OVERLOADED, ("studio", capacity)).fetchall() == []
        # Every node's index came to know every booking, its own and the other's.
        ids = {job.id for job in accepted}
        for engine in engines:
            await wait_until(
                lambda e=engine: {r.job_id for r in e.booking_index.between(None, None)} == ids,
                timeout=30,
            )


async def test_a_node_s_index_learns_the_other_s_bookings_and_their_end(
    tmp_path: Path, pg_url: str
) -> None:
    async with nodes(tmp_path, pg_url, studio=1) as (one, two):
        job = await one.submit(booking(T, T + 10))  # type: ignore[arg-type]
        await wait_until(lambda: two.booking_index.for_job(job.id) != [], timeout=30)
        with pytest.raises(BookingConflict) as refused:  # by two's own index, at once
            await two.submit(booking(T + 5, T + 15))  # type: ignore[arg-type]
        assert refused.value.job_ids == [job.id]
        await one.operate(job.id, "cancel")
        await wait_until(lambda: two.booking_index.for_job(job.id) == [], timeout=30)
        again = await two.submit(booking(T + 5, T + 15))  # type: ignore[arg-type]
        assert [r.resource for r in again.reservations] == ["studio"]


async def test_the_database_refuses_what_a_node_s_index_did_not_know(pg_url: str) -> None:
    """Two stores (two nodes' writers) without the engines' indexes: the database alone."""
    async with open_store(pg_url, single=False) as a, open_store(pg_url, single=False) as b:
        await a.set_capacities({"studio": 1, "dual": 2})
        await a.commit(a.changes().reserve(Reservation(1, "studio", T, T + 10)))
        await a.commit(a.changes().reserve(Reservation(2, "dual", T, T + 10)))
        await b.commit(b.changes().reserve(Reservation(3, "dual", T + 5, T + 6)))
        job = Job(id=4, spec=spec("w"), state=JobState.CONFIRMED, created_at=T, updated_at=T)
        unit = b.changes().insert_job(job).reserve(Reservation(4, "dual", T, T))
        with pytest.raises(BookingConflict) as refused:
            await b.commit(unit.reserve(Reservation(4, "studio", T + 9, T + 12)))
        assert refused.value.resource == "studio" and refused.value.job_ids == [1]
        assert await b.load_job(4) is None  # nothing of the refused unit was applied
        with pytest.raises(BookingConflict) as full:  # dual: both slots held at T + 5
            await a.commit(a.changes().reserve(Reservation(5, "dual", T + 5, T + 5)))
        assert full.value.resource == "dual" and full.value.job_ids == [2, 3]
        # Zero-length bookings hold their instant, not the end of another booking.
        await b.commit(b.changes().reserve(Reservation(6, "studio", T + 10, T + 10)))


async def test_a_node_that_lost_the_news_reads_every_booking_again(
    tmp_path: Path, pg_url: str
) -> None:
    listeners = (
        "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN jobd_bookings'"
        " AND datname = current_database()"
    )
    async with nodes(tmp_path, pg_url, studio=1) as (one, two):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            before = {r[0] for r in conn.execute(listeners).fetchall()}
            assert len(before) == 2
            for pid in before:  # the news connections are lost (a proxy's idle timeout, ...)
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            job = await one.submit(booking(T, T + 10))  # type: ignore[arg-type]
            await wait_until(lambda: two.booking_index.for_job(job.id) != [], timeout=30)
            await wait_until(
                lambda: len({r[0] for r in conn.execute(listeners).fetchall()} - before) == 2,
                timeout=30,
            )


async def test_nodes_starting_together_write_the_capacities_in_turn(pg_url: str) -> None:
    """Every node writes the configured capacities at start-up: two at once must not race
    into a duplicate key (a node that failed there exited before it ever served)."""
    async with open_store(pg_url, single=False) as a, open_store(pg_url, single=False) as b:
        for round_ in range(20):
            capacities = {"studio": 1, "dual": 2, f"r{round_}": 3}
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.set_capacities, capacities)
                tg.start_soon(b.set_capacities, capacities)
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT name, capacity FROM jobd_resources ORDER BY name")
            assert rows.fetchall() == [("dual", 2), ("r19", 3), ("studio", 1)]
