"""A PostgreSQL database at an older schema, the writer's way of writing to it, and lock
queues built in it: what the upgrade tests of ``tests/test_postgres_schema*.py`` share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import anyio
import psycopg
import pytest

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState as S
from jobd.store.assetlocks import LockStart
from jobd.store.postgres import open_store
from jobd.store.postgres import queries as q
from jobd.store.postgres.bulk import payload, plan
from jobd.store.postgres.migrate import migrations
from jobd.store.postgres.units import PgUnit

Conn = psycopg.Connection[Any]


def schema_at(url: str, version: int) -> None:
    """Make the empty database ``url`` one of schema ``version``: the package's first schema
    and its migrations up to ``version``, as a daemon of that version left it."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        schema = resources.files("jobd.store.postgres").joinpath("sql/schema.sql").read_text()
        conn.execute(schema)  # the package's own file
        conn.execute(q.INSERT_VERSION, ("1",))
        for number, sql in migrations().items():
            if number <= version:
                conn.execute(sql)
        conn.execute(q.UPDATE_VERSION, (str(version),))


@contextmanager
def node(url: str, name: str) -> Iterator[Conn]:
    """A writer's session of node ``name`` (its jobs are that node's: the claim trigger)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(q.SET_NODE, (name,))
        yield conn


def apply(conn: Conn, *units: PgUnit) -> list[int]:
    """``units`` as the writer sends them (bulk.plan picks the statement); failed units."""
    sql, params, _ = plan(units, payload)
    row = conn.execute(sql, params).fetchone()  # our own statements
    assert row is not None
    return list(row[0])


def waiting_job(conn: Conn, job_id: int, state: S = S.WAITING_FOR_LOCK) -> None:
    """Job ``job_id`` of the session's node, moved from queued to ``state``."""
    spec = JobSpec(workflow="wf")
    job = Job(id=job_id, spec=spec, state=S.QUEUED, created_at=1.0, updated_at=1.0)
    apply(conn, PgUnit().insert_job(job))
    if state is not S.QUEUED:
        moved = PgUnit().transition(job_id, S.QUEUED, state, 2.0, "waits", "scheduler")
        assert apply(conn, moved) == []


def ask(
    conn: Conn,
    name: str,
    job_id: int,
    excl: tuple[str, ...],
    shared: tuple[str, ...] = (),
    start: bool = False,
) -> None:
    """Node ``name``'s request for ``job_id``'s locks (its start with it when ``start``)."""
    begin = LockStart(None, None, 0.0) if start else None
    apply(conn, PgUnit().lock_request(job_id, name, excl, shared, 1000.0 + job_id, begin))


def mixed_queues(a: Conn, b: Conn) -> None:
    """Nodes a's and b's requests for jobs 1-8 (waiting jobs already: 1, 3, 5, 6, 8 of a's,
    2, 4, 7 of b's), shared, exclusive, several assets and starts of both nodes: on x, 1
    holds, then 2 and 3 shared, 4 exclusive (b's, started by a's release), 5 shared behind
    it; 6 holds y, 7 wants y and z (all or nothing), 8 waits behind 7 on z."""
    ask(a, "a", 1, ("x",))
    ask(b, "b", 2, (), ("x",))
    ask(a, "a", 3, (), ("x",))
    ask(b, "b", 4, ("x",), start=True)  # another node's job, started by a's release
    ask(a, "a", 5, (), ("x",), start=True)  # shared, behind the exclusive 4
    ask(a, "a", 6, ("y",))
    ask(b, "b", 7, ("y", "z"))  # all or nothing: not z alone
    ask(a, "a", 8, ("z",))  # behind 7 on z, though z is free


def held(conn: Conn) -> dict[int, bool]:
    """Each request's job: whether it is granted."""
    rows = conn.execute("SELECT job_id, granted_at IS NOT NULL FROM lock_requests").fetchall()
    return dict(rows)


def migrate(url: str) -> None:
    """Bring ``url`` to the current schema as a daemon does: by opening the store."""

    async def reopen() -> None:
        async with open_store(url):
            pass

    anyio.run(reopen)


def explained(conn: Conn, *, analyze: bool = False) -> list[str]:
    """From now on, the plan of every statement ``conn`` runs, nested ones included, as
    ``auto_explain`` writes it (with the rows each node saw when ``analyze``), appended to
    the list returned. Skips the test where the role may not load ``auto_explain``."""
    if conn.execute("SELECT current_setting('is_superuser')").fetchone() != ("on",):
        pytest.skip("loading auto_explain needs a superuser (JOBD_TEST_PG_URL's role is not)")
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    settings = [
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "auto_explain.log_level = notice",
        "client_min_messages = notice",
    ]
    if analyze:
        settings += ["auto_explain.log_analyze = on", "auto_explain.log_timing = off"]
    for setting in settings:
        conn.execute(f"SET {setting}")
    return plans
