"""The list filters in the store: results against a reference, plans by EXPLAIN, migration.

A real SQLite file written by the store's writer process (triggers and all); the reads and
the query plans are checked with a plain ``sqlite3`` connection to the same file.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from jobd.core.models import Job, JobSpec, Reservation
from jobd.core.states import JobState
from jobd.store import JobFilter, open_store
from jobd.store import sqlite as st
from jobd.store.sqlite import Unit, job_insert, read_filtered, sqlwriter
from jobd.store.sqlite.hours import hour_page

S = JobState
N = 6000  # above the planner's "small" bound (2,000), so the ordered reads are exercised
T0 = 1_900_000_000.0


def make_jobs() -> list[Job]:
    rng = random.Random(7)
    jobs = []
    for i in range(1, N + 1):
        rare = i % 997 == 0
        spec = JobSpec(
            workflow="archive" if rare else "ingest",
            name=None if i % 3 else f"Clip-{i:05d}{'-Promo' if i % 500 == 0 else ''}",
            assets=(f"tape-{i % 7}",) if i % 2 else (),
            shared_assets=("lib",) if i % 10 == 0 else (),
            resources=("enc-1",) if i % 50 == 0 else (),
            pools=("encoders",) if i % 1000 == 1 else (),
            start_at=T0 + i * 60 if i % 4 == 0 else None,
        )
        state = S.FAILED if rare or i % 211 == 0 else rng.choice([S.COMPLETED, S.CONFIRMED])
        jobs.append(Job(i, spec, state, created_at=T0 + i, updated_at=T0 + i))
    return jobs


def expected(jobs: list[Job], f: JobFilter, reserved: dict[int, str]) -> list[int]:
    def ok(job: Job) -> bool:
        s = job.spec
        t = s.start_at if s.start_at is not None else job.created_at
        resources = {*s.resources, *s.pools} | ({reserved[job.id]} if job.id in reserved else set())
        return (
            (not f.states or job.state in f.states)
            and (f.workflow is None or s.workflow == f.workflow)
            and (f.asset is None or f.asset in (*s.assets, *s.shared_assets))
            and (f.resource is None or f.resource in resources)
            and (f.since is None or t >= f.since)
            and (f.until is None or t <= f.until)
            and (f.search is None or f.search.lower() in job.name.lower())
        )

    return sorted((job.id for job in jobs if ok(job)), reverse=True)


@pytest.fixture(scope="module")
def db() -> Iterator[tuple[Path, list[Job], dict[int, str]]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobd.db"
        jobs = make_jobs()
        reserved = {j.id: "enc-2" for j in jobs if j.spec.pools}

        async def fill() -> None:
            async with open_store(path, synchronous="off") as store:
                unit = Unit()
                for job in jobs:
                    unit.add(*job_insert(job))
                for job_id, resource in reserved.items():
                    res = Reservation(job_id, resource, T0, T0 + 60, "encoders")
                    unit.add(
                        'INSERT INTO reservations (job_id, resource, start, "end", pool)'
                        " VALUES (?,?,?,?,?)",
                        (res.job_id, res.resource, res.start, res.end, res.pool),
                    )
                await store.commit(unit)

        anyio.run(fill)
        yield path, jobs, reserved


FILTERS = [
    JobFilter(),
    JobFilter(states=(S.FAILED,)),
    JobFilter(states=(S.FAILED, S.CONFIRMED)),
    JobFilter(workflow="archive"),
    JobFilter(workflow="ingest", states=(S.FAILED,)),
    JobFilter(asset="tape-3"),
    JobFilter(asset="lib"),
    JobFilter(asset="tape-3", states=(S.COMPLETED,)),
    JobFilter(resource="enc-1"),
    JobFilter(resource="enc-2"),
    JobFilter(resource="encoders"),
    JobFilter(since=T0 + 5000),
    JobFilter(until=T0 + 100),
    JobFilter(since=T0 + 1000, until=T0 + 1100),
    JobFilter(since=T0 + 60 * 3000),
    # Time ranges of more than 2,000 jobs, read hour by hour (hours.py): edges mid-hour,
    # an hour's start exactly, open ends, a range with no jobs, since after until.
    JobFilter(until=T0 + 150_000),
    JobFilter(since=T0 + 3000, until=T0 + 200_000),
    JobFilter(since=T0 + 3600 * 3, until=T0 + 3600 * 60),
    JobFilter(since=T0 + 100),
    JobFilter(until=T0 + 10**6),
    JobFilter(since=T0 + 10**6),
    JobFilter(since=T0 + 200_000, until=T0 + 3000),
    # ... with other conditions checked on each row of each hour.
    JobFilter(workflow="ingest", until=T0 + 150_000),
    JobFilter(states=(S.COMPLETED, S.CONFIRMED), since=T0 + 3000, until=T0 + 200_000),
    JobFilter(asset="tape-3", since=T0 + 100),
    JobFilter(search="clip", until=T0 + 10**6),
    JobFilter(resource="encoders", since=T0 + 100),
    JobFilter(search="promo"),
    JobFilter(search="clip-0"),
    JobFilter(search="ingest-12"),
    JobFilter(search="5"),
    JobFilter(search="%"),
    JobFilter(search="archive", states=(S.FAILED,), until=T0 + 5000),
    JobFilter(workflow="nothing"),
]


@pytest.mark.parametrize("f", FILTERS, ids=[repr(f) for f in FILTERS])
def test_each_filter_matches_the_reference_page_by_page(
    db: tuple[Path, list[Job], dict[int, str]], f: JobFilter
) -> None:
    path, jobs, reserved = db
    want = expected(jobs, f, reserved)
    got: list[int] = []
    cursor = None
    with sqlite3.connect(path) as conn:
        while True:
            page = [r[0] for r in read_filtered(conn, f, "j.id", 700, cursor)]
            got += page
            if len(page) < 700:
                break
            cursor = page[-1]
        oldest_first = [r[0] for r in read_filtered(conn, f, "j.id", 10**6, None, False)]
    assert got == want
    assert oldest_first == want[::-1]


def plans(conn: sqlite3.Connection, f: JobFilter) -> list[str]:
    lines = []
    for arm in st.plan_filter(conn, f, None):
        sql, params = arm.sql("j.id", True, None, 100)
        lines += [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    return lines


@pytest.mark.parametrize(
    ("f", "index"),
    [
        (JobFilter(states=(S.CONFIRMED,)), "jobs_by_state"),
        (JobFilter(states=(S.FAILED, S.CONFIRMED, S.COMPLETED)), "jobs_by_state"),
        (JobFilter(workflow="ingest"), "jobs_by_workflow"),
        (JobFilter(workflow="archive"), "jobs_by_workflow"),
        (JobFilter(asset="tape-3"), "SEARCH k USING PRIMARY KEY (kind=? AND key=?)"),
        (JobFilter(resource="enc-1"), "SEARCH k USING PRIMARY KEY (kind=? AND key=?)"),
        (JobFilter(search="clip"), "VIRTUAL TABLE INDEX"),
        (JobFilter(since=T0 + 1000, until=T0 + 1100), "jobs_by_time"),
    ],
)
def test_every_filter_reads_through_an_index(
    db: tuple[Path, list[Job], dict[int, str]], f: JobFilter, index: str
) -> None:
    """No filtered read scans the table; a read in id order needs no sort."""
    with sqlite3.connect(db[0]) as conn:
        lines = plans(conn, f)
    text = "\n".join(lines)
    assert index in text, text
    assert not any(line.split()[:2] == ["SCAN", "j"] for line in lines), text
    arms = st.plan_filter(sqlite3.connect(db[0]), f, None)
    if all(arm.ordered for arm in arms):
        assert "TEMP B-TREE" not in text, text


def test_a_version_1_database_is_migrated_and_its_jobs_found(tmp_path: Path) -> None:
    """An existing database (schema 1) gets the filter tables, filled from its jobs."""
    path = tmp_path / "old.db"
    schema = Path(st.__file__).parent / "sql" / "schema.sql"
    with sqlite3.connect(path) as conn:
        conn.executescript(schema.read_text())
        conn.execute("PRAGMA user_version = 1")
        for job in make_jobs()[:300]:
            conn.execute(*job_insert(job))
        conn.execute("INSERT INTO schedules (name) VALUES ('nightly')")

    async def reopen() -> list[Any]:
        async with open_store(path) as store:
            found = await store.list_jobs(JobFilter(asset="tape-3", search="clip"), 1000, None)
            return [job.id for job in found]

    found = anyio.run(reopen)
    want = expected(make_jobs()[:300], JobFilter(asset="tape-3", search="clip"), {})
    assert found == want and found
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == st.SCHEMA_VERSION
        assert conn.execute("SELECT paused_at FROM schedules").fetchall() == [(None,)]


def _keys_after_writes(path: Path, version: int) -> list[tuple[str, str, int]]:
    """``job_keys`` of a database at schema ``version`` after the same inserts, spec edits
    and reservations: what the filter triggers of that version wrote."""
    schema = Path(st.__file__).parent / "sql" / "schema.sql"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        sqlwriter.migrate(conn, str(path), str(schema), version)
        jobs = make_jobs()[:1000]
        conn.execute("BEGIN")
        # Key names inside the parameters only: no keys, whether or not the spec's text is
        # searched for them first.
        decoy = JobSpec("ingest", params={"assets": ["no"], "note": '"pools"'})
        jobs.append(Job(1001, decoy, S.CONFIRMED, created_at=T0, updated_at=T0))
        for job in jobs:
            conn.execute(*job_insert(job))
        for job in jobs[::7]:
            conn.execute(
                'INSERT INTO reservations (job_id, resource, start, "end", pool)'
                " VALUES (?, ?, ?, ?, ?)",
                (job.id, "enc-9", T0, T0 + 60, None),
            )
        for job in jobs[::3]:  # every shape of edit: keys added, changed and emptied
            spec = JobSpec(
                "ingest",
                assets=("tape-x", "tape-y") if job.id % 2 else (),
                shared_assets=("lib",) if job.id % 5 == 0 else (),
                pools=("encoders",) if job.id % 9 == 0 else (),
            )
            conn.execute("UPDATE jobs SET spec = ? WHERE id = ?", (st.spec_to_json(spec), job.id))
        conn.execute("COMMIT")
        rows = conn.execute("SELECT kind, key, job_id FROM job_keys ORDER BY 3, 1, 2").fetchall()
    finally:
        conn.close()
    return [tuple(row) for row in rows]


def test_the_filter_triggers_write_the_keys_that_version_5_wrote(tmp_path: Path) -> None:
    """Schema 6 reads a spec's key lists only when its text names one: the same rows."""
    old = _keys_after_writes(tmp_path / "five.db", 5)
    new = _keys_after_writes(tmp_path / "six.db", st.SCHEMA_VERSION)
    assert st.SCHEMA_VERSION >= 6
    assert {kind for kind, _, _ in old} == {"asset", "resource"}
    assert len(old) > 900 and 1001 not in {job_id for _, _, job_id in old}
    assert new == old


def test_a_version_5_database_keeps_its_keys_and_finds_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "jobd.db"
    before = _keys_after_writes(path, 5)
    extra = Job(5001, JobSpec("ingest", assets=("new-tape",)), S.CONFIRMED, T0, T0)

    async def reopen() -> list[int]:
        async with open_store(path) as store:
            await store.commit(Unit().add(*job_insert(extra)))
            return [job.id for job in await store.list_jobs(JobFilter(asset="new-tape"), 10, None)]

    assert anyio.run(reopen) == [5001]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == st.SCHEMA_VERSION
        after = conn.execute("SELECT kind, key, job_id FROM job_keys ORDER BY 3, 1, 2").fetchall()
    assert [tuple(row) for row in after] == [*before, ("asset", "new-tape", 5001)]


def test_edits_renames_and_deletes_keep_the_filter_tables_true(tmp_path: Path) -> None:
    path = tmp_path / "jobd.db"
    jobs = make_jobs()[:20]

    async def run() -> dict[str, list[int]]:
        async with open_store(path) as store:
            unit = Unit()
            for job in jobs:
                unit.add(*job_insert(job))
            await store.commit(unit)
            renamed = st.spec_to_json(JobSpec("ingest", name="Renamed", assets=("vault",)))
            await store.commit(
                Unit()
                .add("UPDATE jobs SET spec = ?, name = 'Renamed' WHERE id = 5", (renamed,))
                .add("DELETE FROM jobs WHERE id = 7", ())
            )
            out = {}
            for key, f in {
                "vault": JobFilter(asset="vault"),
                "renamed": JobFilter(search="renamed"),
                "old-asset": JobFilter(asset=f"tape-{5 % 7}"),
                "seven": JobFilter(search="ingest-7"),
            }.items():
                out[key] = [job.id for job in await store.list_jobs(f, 100, None)]
            return out

    found = anyio.run(run)
    assert found["vault"] == [5] and found["renamed"] == [5]
    assert 5 not in found["old-asset"]
    assert found["seven"] == []


@pytest.mark.parametrize(
    "f",
    [JobFilter(until=T0 + 150_000), JobFilter(since=T0 + 3000, until=T0 + 200_000)],
    ids=repr,
)
@pytest.mark.parametrize("cursor", [None, 5500])
def test_a_time_range_alone_reads_hour_by_hour_through_the_index(
    db: tuple[Path, list[Job], dict[int, str]], f: JobFilter, cursor: int | None
) -> None:
    """Over more than 2,000 jobs, a time range's page reads ``jobs_by_hour`` in id order:
    every statement the read runs is served by an index, none sorts, and the planner counts
    no more than the 2,000 entries that tell a small driver (the range read once)."""
    statements: list[str] = []
    with sqlite3.connect(db[0]) as conn:
        conn.set_trace_callback(statements.append)
        read_filtered(conn, f, "j.id", 100, cursor)
        conn.set_trace_callback(None)
        hourly = [s for s in statements if "jobs_by_hour" in s]
        counts = [s for s in statements if s.startswith("SELECT count(")]
        assert hourly and all(s.endswith("LIMIT 2000)") for s in counts), counts
        for sql in hourly:
            lines = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            text = "\n".join(lines)
            assert "USING COVERING INDEX jobs_by_hour" in text or "INDEX jobs_by_hour" in text
            assert "TEMP B-TREE" not in text and not any(
                line.split()[:2] == ["SCAN", "j"] for line in lines
            ), text


def test_hour_by_hour_pages_match_the_reference_and_give_up_past_their_bound(
    db: tuple[Path, list[Job], dict[int, str]],
) -> None:
    """Pages of 50 both ways, cursor to cursor; a range over more hours than ``most``
    holding jobs is left to the caller (None)."""
    path, jobs, reserved = db
    f = JobFilter(since=T0 + 1800, until=T0 + 3600 * 70 + 1)
    want = expected(jobs, f, reserved)
    with sqlite3.connect(path) as conn:
        for descending in (True, False):
            got: list[int] = []
            cursor = None
            while page := hour_page(conn, f.since, f.until, 50, cursor, descending):
                got += page
                cursor = page[-1]
            assert got == (want if descending else want[::-1])
        assert hour_page(conn, f.since, f.until, 50, most=3) is None
