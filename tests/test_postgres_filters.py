"""The list filters on the PostgreSQL store: results against a reference, plans by EXPLAIN.

One real database for the module (CREATE DATABASE costs ~1 s here), owned by a role that
is no superuser, so the schema's migrations (``CREATE EXTENSION pg_trgm`` included) are
shown to work for an ordinary owner. The jobs are those of tests/test_filters.py, written
through the store (its triggers fill ``job_keys`` and ``job_names``); every filter is
read page by page both ways and compared with a reference computed in Python, and the
statements a read sends are replayed under EXPLAIN: which index, no scan of the table,
and how many rows a page of old jobs reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import anyio
import psycopg
import pytest

from bench.pglist import Recording
from jobd.core.models import Job, JobSpec, Reservation
from jobd.core.states import JobState
from jobd.store import JobFilter
from jobd.store.postgres import SCHEMA_VERSION, open_store
from jobd.store.postgres import queries as q
from jobd.store.postgres.filters import read_filtered
from jobd.store.postgres.hours import hour_page
from jobd.store.postgres.migrate import migrations
from tests import pgserver
from tests.test_filters import FILTERS, T0, expected, make_jobs

S = JobState
Reserved = dict[int, str]


def _url(owned: tuple[str, str | None], search_path: str | None = None) -> str:
    """The module's database URL whose sessions act as its owner (SET ROLE at connection,
    when the server's role is a superuser), on ``search_path``."""
    url, role = owned
    opts = [f"-c role={role}"] if role is not None else []
    if search_path is not None:
        opts.append(f"-c search_path={search_path}")
    if not opts:
        return url
    parts = urlsplit(url)
    query = "&".join(
        filter(None, [parts.query, urlencode({"options": " ".join(opts)}, quote_via=quote)])
    )
    return urlunsplit(parts._replace(query=query))


@pytest.fixture(scope="module")
def owned(pg_server: str) -> Iterator[tuple[str, str | None]]:
    """A fresh database owned by a role that is no superuser: (its URL, the role made for it,
    or None when the server's own role is no superuser already). The role is dropped after
    the database."""
    with psycopg.connect(pg_server, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        role = f"jobd_owner_{uuid.uuid4().hex[:8]}" if row and row[0] else None
        if role is not None:
            conn.execute(f"CREATE ROLE {role} NOLOGIN")  # type: ignore[arg-type]  # our name
    try:
        with pgserver.fresh_database(pg_server) as url:
            if role is not None:
                with psycopg.connect(url, autocommit=True) as conn:
                    name = urlsplit(url).path[1:]
                    conn.execute(f"ALTER DATABASE {name} OWNER TO {role}")  # type: ignore[arg-type]
            yield url, role
    finally:
        if role is not None:
            with psycopg.connect(pg_server, autocommit=True) as conn:
                conn.execute(f"DROP ROLE IF EXISTS {role}")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def db(owned: tuple[str, str | None]) -> tuple[str, list[Job], Reserved]:
    """The module's jobs stored through the store, statistics taken: (URL, jobs, bookings)."""
    url = _url(owned)
    jobs = make_jobs()
    reserved = {j.id: "enc-2" for j in jobs if j.spec.pools}

    async def fill() -> None:
        async with open_store(url) as store:
            unit = store.changes()
            for job in jobs:
                unit.insert_job(job)
            for job_id, resource in reserved.items():
                unit.reserve(Reservation(job_id, resource, T0, T0 + 60, "encoders"))
            await store.commit(unit)
            await store.analyze()

    anyio.run(fill)
    return url, jobs, reserved


def test_an_owner_that_is_no_superuser_migrates_the_schema(
    owned: tuple[str, str | None], db: tuple[str, list[Job], Reserved]
) -> None:
    with psycopg.connect(db[0]) as conn:
        row = conn.execute(
            "SELECT rolsuper, current_user FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row is not None and row[0] is False
        assert owned[1] is None or row[1] == owned[1]
        version = conn.execute(q.SELECT_VERSION).fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        names = conn.execute("SELECT count(*) FROM job_names").fetchone()
        assert names == (len(db[1]),)


PG_FILTERS = [
    *FILTERS,
    JobFilter(search="_"),
    JobFilter(search="p-0"),
    JobFilter(search="lip-00"),
    JobFilter(search="CLIP-01", until=T0 + 3000),
    JobFilter(search="promo", states=(S.COMPLETED, S.FAILED)),
    JobFilter(states=(S.COMPLETED, S.CONFIRMED)),
    JobFilter(states=(S.COMPLETED, S.FAILED), until=T0 + 1000),
    JobFilter(workflow="archive", since=T0 + 100),
    JobFilter(workflow="ingest", until=T0 + 1000),
    JobFilter(asset="tape-3", search="clip"),
    JobFilter(resource="enc-1", until=T0 + 3000),
    JobFilter(until=T0 + 1000),
    JobFilter(since=T0 + 5999.5),
]


def _read_all(url: str, f: JobFilter, page: int = 700) -> tuple[list[int], list[int]]:
    """Every match newest first, page by page through ``list_jobs``; and ``match_ids``."""

    async def read() -> tuple[list[int], list[int]]:
        got: list[int] = []
        cursor = None
        async with open_store(url) as store:
            while True:
                found = [job.id for job in await store.list_jobs(f, page, cursor)]
                got += found
                if len(found) < page:
                    break
                cursor = found[-1]
            return got, await store.match_ids(f, 10**6)

    return anyio.run(read)


@pytest.mark.parametrize("f", PG_FILTERS, ids=[repr(f) for f in PG_FILTERS])
def test_each_filter_matches_the_reference_page_by_page(
    db: tuple[str, list[Job], Reserved], f: JobFilter
) -> None:
    url, jobs, reserved = db
    want = expected(jobs, f, reserved)
    newest_first, oldest_first = _read_all(url, f)
    assert newest_first == want
    assert oldest_first == want[::-1]


def _statements(
    url: str, f: JobFilter, cursor: int | None = None, limit: int = 100
) -> list[tuple[str, Any]]:
    async def read() -> list[tuple[str, Any]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            recording = Recording(conn)
            await read_filtered(cast(Any, recording), f, "j.id", limit, cursor)
            return recording.sent

    return anyio.run(read)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


#: What makes the planner take the module's 6,000 jobs for many: it plans as for 1,000,000.
_AS_IF_MANY = ("enable_seqscan", "enable_bitmapscan", "enable_hashjoin", "enable_mergejoin")


def _explain(
    url: str,
    sql: str,
    params: Any,
    analyze: bool = False,
    no_seqscan: bool = False,
    as_if_many: bool = False,
) -> list[dict[str, Any]]:
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    with psycopg.connect(url) as conn:
        if no_seqscan:
            conn.execute("SET enable_seqscan = off")
        for setting in _AS_IF_MANY if as_if_many else ():
            conn.execute(f"SET {setting} = off")  # type: ignore[arg-type]  # our own names
        row = conn.execute(f"EXPLAIN ({options}) {sql}", params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    doc = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return list(_nodes(doc[0]["Plan"]))


@pytest.mark.parametrize(
    ("f", "index"),
    [
        (JobFilter(states=(S.FAILED,)), "jobs_by_state"),
        (JobFilter(states=(S.FAILED, S.CONFIRMED, S.COMPLETED)), "jobs_by_state"),
        # A workflow's and a time range's ids are on job_names (schema 20), each job then read
        # by primary key: over 6,000 jobs the planner may hash-join a scan of jobs instead
        # (cheaper at that size; over 1,000,000, bench/pglist.py, it joins by primary key).
        (JobFilter(workflow="archive"), "job_names_by_workflow*"),
        (JobFilter(asset="tape-3"), "job_keys_pkey"),
        (JobFilter(resource="enc-1", states=(S.COMPLETED, S.CONFIRMED)), "job_keys_pkey"),
        # Over 6,000 names the planner reads job_names whole (its cost is that of a few
        # index pages): these two are planned without sequential scans, to show that the
        # statements can be served by the trigram index (they are over 1,000,000 jobs).
        (JobFilter(search="promo"), "job_names_trigrams*"),
        (JobFilter(search="promo", until=T0 + 10**6), "job_names_trigrams*"),
        (JobFilter(since=T0 + 1000, until=T0 + 1100), "job_names_by_hour*"),
        (JobFilter(until=T0 + 150_000), "job_names_by_hour*"),
        (JobFilter(workflow="ingest", until=T0 + 150_000), "job_names_by_hour*"),
        (JobFilter(since=T0 + 3000, states=(S.COMPLETED, S.CONFIRMED)), "job_names_by_hour*"),
    ],
    ids=repr,
)
def test_every_filtered_read_is_served_by_an_index(
    db: tuple[str, list[Job], Reserved], f: JobFilter, index: str
) -> None:
    """Each statement that reads the page is planned on an index, none scans ``jobs``, and
    the named index drives one of them; the counts that choose the index stop at 2,000
    entries each (over 6,000 jobs the planner may read those from the table)."""
    url, no_seqscan = db[0], index.endswith("*")
    index = index.rstrip("*")
    used: set[str] = set()
    for sql, params in _statements(url, f):
        nodes = _explain(url, sql, params, no_seqscan=no_seqscan)
        used |= {n["Index Name"] for n in nodes if "Index Name" in n}
        if _is_count(sql):
            assert sql.count("LIMIT 2000") == sql.count("count(*)"), sql
            continue
        seq = [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == "jobs"]
        assert not seq, (sql, nodes)
    assert index in used, used


def _is_count(sql: str) -> bool:
    return sql.startswith("SELECT (SELECT count(*)")


def _rows_read(nodes: list[dict[str, Any]]) -> int:
    """Rows the scans of a plan read: those they returned and those they filtered out."""
    total = 0
    for node in nodes:
        if "Scan" in node["Node Type"] and "Relation Name" in node:
            loops = node.get("Actual Loops", 1)
            kept = node.get("Actual Rows", 0)
            dropped = node.get("Rows Removed by Filter", 0) + node.get(
                "Rows Removed by Index Recheck", 0
            )
            total += (kept + dropped) * loops
    return total


#: The hours of the module's jobs: T0 + 800 begins one (T0 is 1,900,000,000).
HOUR_AT = T0 + 800


@pytest.mark.parametrize(
    "f",
    [
        JobFilter(until=HOUR_AT + 3599.9),
        JobFilter(workflow="ingest", until=HOUR_AT + 3599.9),
        JobFilter(states=(S.COMPLETED, S.CONFIRMED), until=HOUR_AT + 3599.9),
        JobFilter(since=HOUR_AT - 3600, until=HOUR_AT + 3599.9),
    ],
    ids=repr,
)
def test_a_page_of_old_jobs_reads_about_a_page_of_rows(
    db: tuple[str, list[Job], Reserved], f: JobFilter
) -> None:
    """A time range of the oldest jobs (over 2,000 of them; its ends at hours' ends): walking
    the primary key from the newest job (the planner's choice for ``ORDER BY id DESC LIMIT
    100``) read some 1,700 rows before the page; read hour by hour, the page's statements
    read its 100 rows and the hours' first ids (the counts are bounded on their own)."""
    url = db[0]
    statements = [(sql, p) for sql, p in _statements(url, f) if not _is_count(sql)]
    read = sum(_rows_read(_explain(url, sql, p, analyze=True)) for sql, p in statements)
    assert read <= 300, (read, statements)


@pytest.mark.parametrize(
    ("f", "limit"),
    [
        (JobFilter(states=(S.FAILED,), search="clip"), 3),  # 34 failed, a third named clip
        (JobFilter(states=(S.FAILED,), workflow="ingest", search="clip"), 3),
    ],
    ids=repr,
)
def test_a_search_with_a_small_other_filter_reads_about_its_page(
    db: tuple[str, list[Job], Reserved], f: JobFilter, limit: int
) -> None:
    """A search with another filter under 2,000 entries: that filter's index walked in id
    order, each row's name checked, until the page is full; no count of the search. Read
    whole, the 34 failed jobs were each read with their index entry (40-44 rows for a page of
    3); walked, about a page over the density of the names among them (a third). Planned
    as over 1,000,000 jobs (bench/pglist.py's plans there are these): over 6,000 the
    planner rightly reads the whole table instead."""
    url = db[0]
    sent = _statements(url, f, limit=limit)
    counts = [sql for sql, _ in sent if _is_count(sql)]
    # (no count of the search: of names; a workflow's count is on job_names since schema 20)
    assert len(counts) == 1 and "n.name" not in counts[0], counts
    statements = [(sql, p) for sql, p in sent if not _is_count(sql)]
    plans = [_explain(url, sql, p, analyze=True, as_if_many=True) for sql, p in statements]
    read = sum(_rows_read(nodes) for nodes in plans)
    assert read <= 8 * limit, (read, statements, plans)


@pytest.mark.parametrize("descending", [True, False], ids=["newest first", "oldest first"])
def test_a_common_search_alone_is_read_from_the_next_jobs_without_a_count(
    db: tuple[str, list[Job], Reserved], descending: bool
) -> None:
    """A search alone is first tried on the next 1,000 jobs by primary key (a third are
    named clip): the page is there, and the search is not counted (the count read
    job_names from its start until 2,000 names matched: 6,000 rows over 1,000,000 jobs)."""
    url = db[0]
    f = JobFilter(search="clip")

    async def read() -> tuple[list[tuple[str, Any]], list[int]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            recording = Recording(conn)
            rows = await read_filtered(cast(Any, recording), f, "j.id", 20, 4000, descending)
            return recording.sent, [r[0] for r in rows]

    sent, got = anyio.run(read)
    want = [i for i in expected(db[1], f, db[2]) if (i < 4000 if descending else i > 4000)]
    assert got == (want[:20] if descending else want[::-1][:20])
    assert not [sql for sql, _ in sent if _is_count(sql) or "job_names" in sql], sent
    edge, page = sent
    assert "LIMIT 1000" in edge[0] and "jobs j" in edge[0], edge  # the probe's last id
    plan = _explain(url, *page, analyze=True, as_if_many=True)
    assert _rows_read(plan) <= 8 * 20, (page, plan)


@pytest.mark.parametrize("span", [500, 2], ids=["hour by hour", "populated hours only"])
def test_hour_by_hour_pages_match_the_reference_and_give_up_past_their_bound(
    db: tuple[str, list[Job], Reserved], span: int
) -> None:
    """``hour_page`` alone: pages of 50 both ways, cursor to cursor, whether it probes every
    hour of the range or (a range wider than ``span`` hours) steps between populated
    hours; a range over more populated hours than ``most`` is left to the caller (None)."""
    url, jobs, reserved = db
    f = JobFilter(since=T0 + 1800, until=T0 + 3600 * 70 + 1)
    want = expected(jobs, f, reserved)

    async def pages(descending: bool) -> list[int]:
        got: list[int] = []
        cursor = None
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while page := await hour_page(
                conn, f.since, f.until, "j.id", 50, cursor, descending, span=span
            ):
                got += [row[0] for row in page]
                cursor = got[-1]
            assert await hour_page(conn, f.since, f.until, "j.id", 50, most=3, span=span) is None
        return got

    assert anyio.run(pages, True) == want
    assert anyio.run(pages, False) == want[::-1]


def test_names_follow_inserts_edits_and_deletes(db: tuple[str, list[Job], Reserved]) -> None:
    """job_names is kept by the triggers: a renamed job is found by its new name only, a
    deleted one not at all, a job without a name by ``<workflow>-<id>``."""
    url = db[0]
    base = 900_000

    async def run() -> dict[str, list[int]]:
        async with open_store(url) as store:
            unit = store.changes()
            for i in range(3):
                spec = JobSpec("ingest", name=None if i == 2 else f"Zebra-{i}")
                unit.insert_job(Job(base + i, spec, S.DRAFT, created_at=T0, updated_at=T0))
            await store.commit(unit)
            renamed = JobSpec("ingest", name="Okapi")
            await store.commit(store.changes().redefine_job(base, renamed, T0, []))
            await store.commit(store.changes().delete_job(base + 1, S.DRAFT))
            out = {}
            for text in ("zebra", "okapi", f"ingest-{base + 2}"):
                out[text] = [
                    job.id for job in await store.list_jobs(JobFilter(search=text), 10, None)
                ]
            return out

    found = anyio.run(run)
    with psycopg.connect(url, autocommit=True) as conn:  # the other tests' jobs only, again
        conn.execute("DELETE FROM jobs WHERE id >= %s", (base,))
        assert conn.execute(
            "SELECT count(*) FROM job_names WHERE job_id >= %s", (base,)
        ).fetchone() == (0,)
    assert found == {"zebra": [], "okapi": [base], f"ingest-{base + 2}": [base + 2]}


def test_a_schema_11_database_is_migrated_and_its_jobs_found(
    owned: tuple[str, str | None], db: tuple[str, list[Job], Reserved]
) -> None:
    """A database of the schema before this one (in a schema of its own, in the module's
    database) gets ``job_names`` filled from its jobs and ``jobs_by_hour`` in place of
    ``jobs_by_time``."""
    url = db[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS older CASCADE")
        conn.execute("CREATE SCHEMA older")
        conn.execute("SET search_path = older, public")
        schema = resources.files("jobd.store.postgres").joinpath("sql/schema.sql").read_text()
        with conn.transaction():
            conn.execute(schema)  # type: ignore[arg-type]  # the package's own file
            for number, sql in migrations().items():
                if number <= 11:
                    conn.execute(sql)  # type: ignore[arg-type]
            conn.execute(q.INSERT_VERSION, ("11",))
        for job in make_jobs()[:300]:
            unit = store_unit(job)
            conn.execute(q.APPLY, (unit,))
    older = _url(owned, "older,public")
    found, _ = _read_all(older, JobFilter(search="clip", until=T0 + 250))
    want = expected(make_jobs()[:300], JobFilter(search="clip", until=T0 + 250), {})
    assert found == want and found
    with psycopg.connect(older) as conn:
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'older'")
        }
    # (the store migrates it on to the newest schema: the hours' index on job_names since 20)
    assert "job_names_by_hour" in indexes and "jobs_by_time" not in indexes


def store_unit(job: Job) -> str:
    """One job's insert as ``jobd_apply``'s JSON (the store's own encoding of the unit)."""
    from jobd.store.postgres import PgUnit

    return json.dumps([PgUnit().insert_job(job).statements])
