"""Schema 23 (``sql/migrate-23.sql``) on a real PostgreSQL: the writer's batch functions
keep generic plans for every statement under them. A schema-22 database with lock queues is
migrated; each function the writer's ``APPLY*`` statements call carries the setting beside
its earlier ones, and a run of small lock batches (two releases, each granting and starting
the asset's next waiter) is planned once: ``auto_explain`` shows the lock start's statement
with its parameter, not with the batch's job ids written in (a plan built for that call).
"""

from __future__ import annotations

import re

import psycopg

from jobd.store.postgres import queries as q
from jobd.store.postgres.units import PgUnit
from tests.pgschema import apply, ask, explained, held, migrate, node, schema_at, waiting_job

GENERIC = "plan_cache_mode=force_generic_plan"
#: The writer's batch statements (queries.py): the functions they call are the entry points.
BATCH_STATEMENTS = (q.APPLY, q.APPLY_BULK, q.APPLY_LOCKED, q.APPLY_SPLIT, q.APPLY_SPLIT_DEPS)


def test_every_batch_function_keeps_generic_plans_and_its_earlier_settings(
    pg_empty_url: str,
) -> None:
    url = pg_empty_url
    schema_at(url, 22)
    migrate(url)
    called = {name for sql in BATCH_STATEMENTS for name in re.findall(r"^SELECT (\w+)\(", sql)}
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT oid::regprocedure::text, proconfig FROM pg_proc WHERE proname = ANY(%s)",
            (sorted(called),),
        ).fetchall()
    assert {name.split("(")[0] for name, _ in rows} == called
    assert len(rows) == 5  # jobd_apply_split has two forms
    for name, config in rows:
        assert GENERIC in config, name
        # schema 5's and 18's settings are kept: the plans stay index reads
        assert {"enable_seqscan=off", "enable_bitmapscan=off"} <= set(config), name


def test_small_lock_batches_are_planned_once(pg_empty_url: str) -> None:
    url = pg_empty_url
    schema_at(url, 22)
    rounds = 8
    jobs = range(1, 2 * (rounds + 1) + 1)
    with node(url, "a") as a:
        for job_id in jobs:
            waiting_job(a, job_id)
        for job_id in jobs:  # odd jobs queue on x, even on y; each waiter starts with its grant
            ask(a, "a", job_id, ("x" if job_id % 2 else "y",), start=job_id > 2)
    migrate(url)
    with node(url, "a") as a:
        plans = explained(a)
        for k in range(rounds):
            holders = (2 * k + 1, 2 * k + 2)
            release = [PgUnit().lock_release(j, "a") for j in holders]
            assert apply(a, *release) == []
            assert held(a)[2 * k + 3] and held(a)[2 * k + 4]  # the next two, granted
        started = [p for p in plans if "WITH q AS" in p and "start_job" in p]
        assert len(started) == rounds
        # the last rounds' starts ran on the plan built earlier: its ids a parameter
        assert all("ANY ($1)" in p for p in started[-3:]), started[-1]
        rows = a.execute(
            "SELECT count(*) FROM jobs WHERE state = 'running' AND id = ANY(%s)",
            (list(range(3, 2 * rounds + 3)),),
        ).fetchone()
        assert rows == (2 * rounds,)
