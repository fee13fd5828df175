"""The PostgreSQL benchmarks still run: each with a tiny N on the test server.

As in ``test_bench_smoke.py``, no timing is asserted; a module of its own so that the two
test workers share the benchmarks' minutes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench import batch
from tests.test_bench_smoke import positive


def test_jobd_on_postgresql_beside_its_peers(pg_server: str) -> None:
    from bench import pg as bench_pg

    with bench_pg.fresh_database(pg_server, "jobd_smoke") as url:
        result = bench_pg.run_one("jobd", url, bench_pg.workloads(_pg_args())[1], _pg_args())
    assert result["jobs_per_s"] > 0 and result["batches"] > 0


def test_filtered_pages_on_postgresql(pg_server: str) -> None:
    from bench import pglist

    name = f"jobd_pglist_{uuid.uuid4().hex[:8]}"
    try:
        filled = pglist.fill(pg_server, name, 3000, pglist.SCHEMA_VERSION)
        assert filled["jobs"] == 3000
        pages = pglist.read(pg_server, name, repeat=2, limit=100)["pages"]
    finally:
        pglist.drop(pg_server, name)
    assert set(pages) == set(batch.LIST_FILTERS)
    assert pages["none"]["items"] == 100 and pages["matches nothing"]["items"] == 0


def test_postgresql_peers_when_installed(pg_server: str) -> None:
    pytest.importorskip("procrastinate")
    pytest.importorskip("pgqueuer")
    from bench import pg as bench_pg

    for system in ("procrastinate", "pgqueuer"):
        with bench_pg.fresh_database(pg_server, "jobd_smoke") as url:
            work = bench_pg.workloads(_pg_args())[0]
            assert bench_pg.run_one(system, url, work, _pg_args())["jobs_per_s"] > 0


def test_real_nodes_on_postgresql(pg_server: str) -> None:
    from bench import pgcluster

    args = pgcluster.parse(["--workers", "4", "--batch", "10"])
    result = pgcluster.throughput(pg_server, 1, 20, 10, 0.0, args)
    assert result["jobs_per_s"] > 0 and sum(result["by_node"].values()) == 20


def _pg_args() -> Any:
    from bench import pg as bench_pg

    return bench_pg.parse(["--jobs", "30", "--step-jobs", "10", "--workers", "4"])


async def test_cluster_bookings_throughput_and_race(pg_url: str) -> None:
    from bench import pgbookings

    result = await pgbookings.throughput(pg_url, 20, 2, True)
    assert result["submits_per_s"] > 0
    result = await pgbookings.race(pg_url, 10, 2)
    assert (result["accepted"], result["refused"]) == (2, 8)


async def test_cluster_lock_handoff_and_locked_workload(pg_url: str) -> None:
    from bench import cluster_locks

    result = await cluster_locks.handoff(pg_url, 6, 2)
    assert result["to_running_on_another_node_ms"]["n"] == 5 and positive(result)
    result = await cluster_locks.locked_50ms(pg_url, 20, 2)
    assert result["jobs_per_s"] > 0 and positive(result)
