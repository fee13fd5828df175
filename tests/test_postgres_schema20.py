"""Schema 20 (``sql/migrate-20.sql``) on a real PostgreSQL: the list filters' workflow and hour
indexes move from ``jobs`` (an entry at every state change) to ``job_names`` (written once per
job). A database of schema 19 with jobs of several workflows and times, names, bookings' start
times, held locks and a queue of waiters is migrated: ``job_names`` is rebuilt from its jobs,
every job and lock row is kept, the filters find the same jobs, and what the store writes after
(inserts, an edit that moves a job's start, a delete, a lock release handing over) keeps
``job_names`` in step.
"""

from __future__ import annotations

from typing import Any

import anyio
import psycopg

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState as S
from jobd.store import JobFilter
from jobd.store.postgres import open_store
from jobd.store.postgres import queries as q
from jobd.store.postgres.migrate import SCHEMA_VERSION
from jobd.store.postgres.units import PgUnit
from tests.pgschema import Conn, apply, node, schema_at

#: The start of an hour (near 1,900,000,000): the jobs' times are given from it.
H = 527_778 * 3600.0


def job(job_id: int, state: S = S.COMPLETED) -> Job:
    """Job ``job_id``: workflow ``ingest`` or ``archive``, created in hour H + id // 4, some
    named, every fifth a booking whose start is two hours after its creation."""
    workflow = "ingest" if job_id % 2 else "archive"
    created = H + (job_id // 4) * 3600.0 + job_id
    start = created + 7200.0 if job_id % 5 == 0 else None
    name = f"clip-{job_id}" if job_id % 3 == 0 else None
    spec = JobSpec(workflow=workflow, name=name, start_at=start, end_at=start and start + 60)
    return Job(id=job_id, spec=spec, state=state, created_at=created, updated_at=created)


def fill(url: str) -> None:
    """Jobs 1-20 (completed), then 21-23 waiting for lock x (21 holds it): written at schema 19
    as its writer sends them."""
    with node(url, "a") as a:
        unit = PgUnit()
        for i in range(1, 21):
            unit.insert_job(job(i))
        assert apply(a, unit) == []
        for i in (21, 22, 23):
            assert apply(a, PgUnit().insert_job(job(i, S.QUEUED))) == []
            moved = PgUnit().transition(i, S.QUEUED, S.WAITING_FOR_LOCK, 2.0, "waits", "scheduler")
            assert apply(a, moved) == []
            assert apply(a, PgUnit().lock_request(i, "a", ("x",), (), 1000.0 + i, None)) == []


def snapshot(conn: Conn) -> tuple[list[Any], list[Any]]:
    jobs = conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    return jobs, conn.execute(q.LOCK_ROWS).fetchall()


def names(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT job_id, name, workflow, at_time FROM job_names ORDER BY job_id"
    ).fetchall()


def expected(jobs: list[Job]) -> list[tuple[Any, ...]]:
    out = []
    for j in jobs:
        at = j.spec.start_at if j.spec.start_at is not None else j.created_at
        out.append((j.id, j.spec.name or f"{j.spec.workflow}-{j.id}", j.spec.workflow, at))
    return out


def indexes(conn: Conn, table: str) -> set[str]:
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
    return {r[0] for r in rows.fetchall()}


async def listed(url: str, f: JobFilter) -> list[int]:
    async with open_store(url) as store:  # opening the store migrates it
        return [j.id for j in await store.list_jobs(f, 100, None)]


def listing(url: str, f: JobFilter) -> list[int]:
    return anyio.run(listed, url, f)


def want(jobs: list[Job], f: JobFilter) -> list[int]:
    def time(j: Job) -> float:
        return j.spec.start_at if j.spec.start_at is not None else j.created_at

    return sorted(
        (
            j.id
            for j in jobs
            if (f.workflow is None or j.spec.workflow == f.workflow)
            and (f.since is None or time(j) >= f.since)
            and (f.until is None or time(j) <= f.until)
        ),
        reverse=True,
    )


def test_a_schema_19_database_keeps_its_jobs_and_locks_and_lists_them_from_job_names(
    pg_empty_url: str,
) -> None:
    url = pg_empty_url
    schema_at(url, 19)
    fill(url)
    with psycopg.connect(url) as conn:
        before = snapshot(conn)
        assert {"jobs_by_workflow", "jobs_by_hour"} <= indexes(conn, "jobs")
    jobs = [job(i) for i in range(1, 24)]
    filters = [
        JobFilter(workflow="ingest"),
        JobFilter(workflow="archive", until=H + 3 * 3600.0),
        JobFilter(since=H + 2 * 3600.0 + 0.5, until=H + 4 * 3600.0 + 10.0),
        JobFilter(since=H + 5 * 3600.0),
    ]
    assert listing(url, filters[0]) == want(jobs, filters[0])  # the migration runs here
    with psycopg.connect(url) as conn:
        assert conn.execute(q.SELECT_VERSION).fetchone() == (str(SCHEMA_VERSION),)
        assert snapshot(conn) == before  # every job and lock row as it was
        assert names(conn) == expected(jobs)
        jobs_indexes = indexes(conn, "jobs")
        assert not {"jobs_by_workflow", "jobs_by_hour"} & jobs_indexes
        assert {"job_names_by_workflow", "job_names_by_hour"} <= indexes(conn, "job_names")
    for f in filters:
        assert want(jobs, f) and listing(url, f) == want(jobs, f), f
    with node(url, "a") as a:  # the queue is served as before: 21 releases, 22 gets x
        assert apply(a, PgUnit().lock_release(21, "a")) == []
        held = a.execute("SELECT job_id FROM lock_requests WHERE granted_at IS NOT NULL")
        assert held.fetchall() == [(22,)]


def test_job_names_follows_inserts_edits_and_deletes(pg_url: str) -> None:
    """After the migration: a new job's row at its insert (either write path), an edit that
    moves its start or renames it moves its row, a delete removes it."""

    async def run() -> None:
        async with open_store(pg_url) as store:
            unit = store.changes()
            for i in (1, 2, 5):
                unit.insert_job(job(i, S.DRAFT))
            await store.commit(unit)
            edited = job(5, S.DRAFT)
            spec = JobSpec(
                workflow=edited.spec.workflow,
                name="renamed",
                start_at=H + 40 * 3600.0,
                end_at=H + 40 * 3600.0 + 60,
            )
            unit = store.changes()
            unit.redefine_job(5, spec, H, [])
            await store.commit(unit)
            moved = await store.list_jobs(JobFilter(since=H + 39 * 3600), 10, None)
            assert [j.id for j in moved] == [5]
            unit = store.changes()
            unit.delete_job(2, S.DRAFT)
            await store.commit(unit)

    anyio.run(run)
    with psycopg.connect(pg_url) as conn:
        assert names(conn) == [
            (1, "ingest-1", "ingest", job(1).created_at),
            (5, "renamed", "ingest", H + 40 * 3600.0),
        ]
