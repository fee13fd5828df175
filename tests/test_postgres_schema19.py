"""Schema 19 (``sql/migrate-19.sql``) on a real PostgreSQL: ``jobs_by_schedule``, an index no
read used, is gone; a database of schema 18 with scheduled jobs is migrated with its rows,
and its scheduled jobs are read, listed and moved as before (every read they need has an
index of its own: by id, state, workflow, time).
"""

from __future__ import annotations

import anyio
import psycopg

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState as S
from jobd.store import JobFilter
from jobd.store.postgres import open_store
from jobd.store.postgres import queries as q
from jobd.store.postgres.bulk import payload, plan
from jobd.store.postgres.migrate import SCHEMA_VERSION
from jobd.store.postgres.units import PgUnit
from tests.pgschema import schema_at

#: The indexes of ``jobs`` from schema 19 on (docs/performance.md: each one's reads).
INDEXES = {
    "jobs_pkey",
    "jobs_by_state",
    "jobs_due",
    "jobs_pending",
    "jobs_unconfirmed",
    "jobs_by_workflow",
    "jobs_with_error",
    "jobs_held",
    "jobs_by_hour",
}
#: From schema 20 on: the list filters' workflow and hour indexes are on job_names.
NEWEST = INDEXES - {"jobs_by_workflow", "jobs_by_hour"}


def indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")
        return {r[0] for r in rows.fetchall()}


def job(job_id: int, schedule: str | None) -> Job:
    spec = JobSpec(workflow="nightly" if schedule else "wf", schedule=schedule)
    return Job(id=job_id, spec=spec, state=S.CONFIRMED, created_at=10.0, updated_at=10.0)


def fill(url: str) -> None:
    """Jobs written at schema 18 as its writer sends them (opening a store would migrate)."""
    unit = PgUnit()
    for i in range(1, 7):
        unit.insert_job(job(i, "every-hour" if i % 2 else None))
    sql, params, _ = plan((unit,), payload)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(q.SET_NODE, ("a",))
        row = conn.execute(sql, params).fetchone()  # our own statement
        assert row is not None and list(row[0]) == []


async def check(url: str) -> None:
    async with open_store(url) as store:
        loaded = await store.load_job(3)
        assert loaded is not None and loaded.spec.schedule == "every-hour"
        listed = await store.list_jobs(JobFilter(workflow="nightly"), 10, None)
        assert [j.id for j in listed] == [5, 3, 1]
        unit = store.changes().transition(5, S.CONFIRMED, S.QUEUED, 20.0, "due", "scheduler")
        await store.commit(unit)
        states = await store.job_states([5])
        assert states[5][1] is S.QUEUED
        assert await store.count_state(S.CONFIRMED) == 5


def test_a_schema_18_database_loses_jobs_by_schedule_and_keeps_its_jobs(
    pg_empty_url: str,
) -> None:
    url = pg_empty_url
    schema_at(url, 18)
    fill(url)
    assert indexes(url) == INDEXES | {"jobs_by_schedule"}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, schedule FROM jobs ORDER BY id").fetchall()
    anyio.run(check, url)  # opening the store migrates it
    assert SCHEMA_VERSION >= 20
    assert indexes(url) == NEWEST
    with psycopg.connect(url) as conn:
        assert conn.execute(q.SELECT_VERSION).fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT id, schedule FROM jobs ORDER BY id").fetchall() == rows


def test_a_new_database_has_the_newest_indexes(pg_url: str) -> None:
    assert indexes(pg_url) == NEWEST
