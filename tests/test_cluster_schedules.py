"""Schedules on a cluster (SPEC §10): three real daemons on one PostgreSQL, each running
the same interval schedule's timer; every firing makes exactly one job, and firings
missed while the cluster was down are counted once, however many nodes catch up.

(tests/cluster.py starts the nodes; nothing sleeps but the polls of conditions.)
"""

from __future__ import annotations

import itertools
import time

import pytest

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState
from jobd.store import GuardFailed
from jobd.store.postgres import open_store
from tests import e2e
from tests.cluster import CLUSTER_WORKFLOWS, Cluster

INTERVAL = 1.0
SCHEDULE = f"""
[[schedules]]
name = "tick"
workflow = "demo"
interval = {INTERVAL}
overlap = "allow"
misfire = "skip"
params = {{ who = "tick" }}
"""
EVENTS = "SELECT fire_time, kind, job_id FROM schedule_events WHERE schedule = 'tick'"


def _fired(cluster: Cluster) -> int:
    rows = cluster.sql(f"{EVENTS} AND kind = 'fired'")
    return len(rows)


def _check_one_record_per_firing(cluster: Cluster) -> list[tuple[float, str, int | None]]:
    """Every firing from the first to the last has exactly one event; each fired one has
    its own job; the schedule's counters agree. Returns the events by firing time."""
    events = sorted(cluster.sql(EVENTS))
    times = [e[0] for e in events]
    assert len(times) == len(set(times)), events  # no firing recorded twice
    steps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert steps <= {INTERVAL}, events  # and none left out between the first and the last
    fired = [e[2] for e in events if e[1] == "fired"]
    jobs = cluster.sql("SELECT id FROM jobs WHERE schedule = 'tick'")
    assert sorted(fired) == sorted(j[0] for j in jobs)  # one job per fired firing
    (missed,) = cluster.sql("SELECT missed FROM schedules WHERE name = 'tick'")
    assert missed[0] == sum(1 for e in events if e[1] == "missed")
    return events


def test_three_nodes_make_one_job_per_firing_and_count_a_miss_once(cluster: Cluster) -> None:
    cluster.workflows = CLUSTER_WORKFLOWS + SCHEDULE
    names = ("a", "b", "c")
    cluster.start(*names)
    e2e.wait_until(lambda: _fired(cluster) >= 3, timeout=60, what="three firings")
    for name in names:
        cluster.stop(name)
    before = _check_one_record_per_firing(cluster)
    assert all(kind == "fired" for _, kind, _ in before)
    # Rewind the clock of the schedule: the catch-up of every node finds firings that
    # were already fired (recorded again by none), then those missed while all were down.
    cluster.sql(
        "UPDATE schedules SET last_fire_at = %s WHERE name = 'tick'", (before[0][0],)
    )  # back to the first firing: every later one was recorded, and is not again
    # At least one firing falls while no node runs (the condition is the clock's).
    e2e.wait_until(lambda: time.time() > before[-1][0] + 2 * INTERVAL, what="a firing missed")
    # A node that is up but started after those firings (still starting, say): it was
    # not up when they fell, so they were missed. With it, whichever of the two nodes
    # starts first sees another node up, as both do when they start at the same moment.
    cluster.sql(
        "INSERT INTO nodes (name, workers, run_queue_size, epoch, started_at, renewed_at,"
        " lease_s, state) SELECT 'z', 1, 1, nextval('jobd_node_epochs'), jobd_now(),"
        " jobd_now(), 600, 'up'"
    )
    cluster.start("a", "b")  # two nodes catching up together are enough for the race
    e2e.wait_until(lambda: _fired(cluster) >= len(before) + 1, timeout=60, what="one more")
    for name in ("a", "b"):
        cluster.stop(name)
    after = _check_one_record_per_firing(cluster)
    assert after[: len(before)] == before
    missed = [e for e in after if e[1] == "missed"]
    assert missed and all(e[0] > before[-1][0] for e in missed)


@pytest.mark.anyio
async def test_a_firing_recorded_by_one_node_is_a_failed_guard_for_the_other(
    pg_url: str,
) -> None:
    """Two nodes' stores: the second record of a firing writes nothing, not even its job."""
    async with open_store(pg_url, single=False) as a, open_store(pg_url, single=False) as b:
        job = Job(
            id=1, spec=JobSpec(workflow="w"), state=JobState.CONFIRMED, created_at=0, updated_at=0
        )
        await a.commit(a.changes().insert_job(job).record_firing("tick", 60.0, "fired", job_id=1))
        other = Job(
            id=2, spec=JobSpec(workflow="w"), state=JobState.CONFIRMED, created_at=0, updated_at=0
        )
        unit = b.changes().insert_job(other).record_firing("tick", 60.0, "fired", job_id=2)
        with pytest.raises(GuardFailed):
            await b.commit(unit)
        assert await b.load_job(2) is None
        with pytest.raises(GuardFailed):  # a miss of a firing already recorded
            await b.commit(b.changes().record_firing("tick", 60.0, "missed", reason="down"))
        await b.commit(b.changes().record_firing("tick", 61.0, "missed", reason="down"))
        with pytest.raises(GuardFailed):  # counted once
            await a.commit(a.changes().record_firing("tick", 61.0, "missed", reason="down"))
        rows = await a.schedule_rows()
        assert (rows["tick"]["last_job_id"], rows["tick"]["missed"]) == (1, 1)
