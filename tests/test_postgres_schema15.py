"""Schema 15 (``sql/migrate-15.sql``) on a real PostgreSQL: the same rows and notifications
as before, from fewer executor runs.

- A new job's ``job_keys`` rows come from one statement per INSERT of ``jobs`` (its
  transition table), through ``jobd_apply`` and ``jobd_apply_bulk`` alike: every asset,
  shared asset, resource and pool once, none for a job without them.
- The due trigger fires on ``UPDATE OF due_at`` only: every statement that can move a job
  into confirmed or pending names ``due_at``, so each still notifies ``jobd_due``; a move
  into another state does not.
- A database of schema 14 is migrated and keeps its rows; what is written after behaves
  as above.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import psycopg

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState as S
from jobd.store.postgres import queries as q
from jobd.store.postgres.bulk import group, payload
from jobd.store.postgres.migrate import SCHEMA_VERSION, migrations
from jobd.store.postgres.units import PgUnit

DEADLINE = 30.0
SPECS = {
    1: JobSpec(workflow="wf"),
    2: JobSpec(workflow="wf", assets=("a",)),
    3: JobSpec(workflow="wf", assets=("a", "b"), shared_assets=("c", "a")),
    4: JobSpec(workflow="wf", resources=("r",), pools=("p", "r")),
}
KEYS = {
    2: {("asset", "a")},
    3: {("asset", "a"), ("asset", "b"), ("asset", "c")},
    4: {("resource", "r"), ("resource", "p")},
}


def job(job_id: int, state: S = S.QUEUED, spec: JobSpec | None = None) -> Job:
    spec = spec or SPECS.get(job_id % 10, SPECS[1])
    return Job(id=job_id, spec=spec, state=state, created_at=1.0, updated_at=1.0)


def keys(conn: psycopg.Connection[Any], low: int, high: int) -> dict[int, set[tuple[str, str]]]:
    out: dict[int, set[tuple[str, str]]] = {}
    for kind, key, job_id in conn.execute(
        "SELECT kind, key, job_id FROM job_keys WHERE job_id BETWEEN %s AND %s", (low, high)
    ):
        out.setdefault(job_id, set()).add((kind, key))
    return out


def apply(conn: psycopg.Connection[Any], units: list[PgUnit], bulk: bool) -> None:
    if bulk:
        grouped = group(units)
        assert grouped is not None
        conn.execute(q.APPLY_BULK, (payload(grouped),))
    else:
        conn.execute(q.APPLY, (payload([u.statements for u in units]),))


def test_a_new_jobs_keys_are_written_once_by_either_path(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        apply(conn, [PgUnit().insert_job(job(i)) for i in (11, 12, 13, 14)], bulk=True)
        apply(conn, [PgUnit().insert_job(job(i)) for i in (21, 22, 23, 24)], bulk=False)
        # A key written before the job's row (a reservation's trigger writes its own) stays.
        conn.execute("INSERT INTO job_keys VALUES ('asset', 'a', 32)")
        apply(conn, [PgUnit().insert_job(job(32))], bulk=False)
        found = keys(conn, 0, 99)
    want = {base + k: v for base in (10, 20) for k, v in KEYS.items()} | {32: KEYS[2]}
    assert found == want


def test_a_spec_edit_and_a_delete_still_rewrite_the_keys(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        apply(conn, [PgUnit().insert_job(job(43, S.CONFIRMED))], bulk=True)
        edited = PgUnit().redefine_job(43, SPECS[4], 5.0, [])
        apply(conn, [edited], bulk=False)
        assert keys(conn, 43, 43) == {43: KEYS[4]}
        conn.execute(q.APPLY, (payload([PgUnit().delete_job(43, S.CONFIRMED).statements]),))
        assert keys(conn, 43, 43) == {}


def notified(listener: psycopg.Connection[Any], conn: psycopg.Connection[Any]) -> list[str]:
    """The ``jobd_due`` payloads of ``conn``'s writes since the last call: up to a mark that
    ``conn`` sends now (one session's notifications arrive in the order of its commits)."""
    conn.execute("SELECT pg_notify('jobd_due', 'mark')")
    out = []
    for n in listener.notifies(timeout=DEADLINE):
        if n.payload == "mark":
            return out
        out.append(n.payload)
    raise AssertionError(f"no mark within {DEADLINE} s")


def test_every_move_into_confirmed_or_pending_notifies_and_no_other(pg_url: str) -> None:
    with (
        psycopg.connect(pg_url, autocommit=True) as listener,
        psycopg.connect(pg_url, autocommit=True) as conn,
    ):
        listener.execute("LISTEN jobd_due")
        apply(conn, [PgUnit().insert_job(job(i, S.TENTATIVE)) for i in range(51, 56)], bulk=True)
        assert notified(listener, conn) == []
        one = PgUnit().transition(51, S.TENTATIVE, S.CONFIRMED, 2.0, "t", "t", due_at=3.0)
        apply(conn, [one], bulk=False)
        assert notified(listener, conn) == ["confirmed "]
        two = PgUnit().transition(52, S.TENTATIVE, S.PENDING, 2.0, "t", "t")
        apply(conn, [two], bulk=True)
        assert notified(listener, conn) == ["pending "]
        many = q.TRANSITION_MANY.format(release="")
        params = {"ids": [53, 54], "frm": "tentative", "to": "confirmed", "at": 2.0}
        params |= {"cause": "t", "actor": "t"}
        conn.execute(many, params)
        assert notified(listener, conn) == ["confirmed "]
        edit = PgUnit().redefine_job(51, SPECS[1], 9.0, [])  # a new due time
        apply(conn, [edit], bulk=False)
        assert notified(listener, conn) == ["confirmed "]
        out = PgUnit().transition(55, S.TENTATIVE, S.CANCELED, 2.0, "t", "t")
        apply(conn, [out], bulk=True)
        conn.execute(many, {**params, "ids": [53], "frm": "confirmed", "to": "canceled"})
        assert notified(listener, conn) == []


def test_a_schema_14_database_is_migrated_and_keeps_its_rows(pg_empty_url: str) -> None:
    url = pg_empty_url
    with psycopg.connect(url, autocommit=True) as conn:
        schema = resources.files("jobd.store.postgres").joinpath("sql/schema.sql").read_text()
        with conn.transaction():
            conn.execute(schema)  # type: ignore[arg-type]  # the package's own file
            conn.execute(q.INSERT_VERSION, ("1",))
            for number, sql in migrations().items():
                if number <= 14:
                    conn.execute(sql)  # type: ignore[arg-type]
            conn.execute(q.UPDATE_VERSION, ("14",))
        apply(conn, [PgUnit().insert_job(job(i)) for i in (61, 62, 63, 64)], bulk=True)
        before = keys(conn, 0, 99)
        lock = ["lock_request", 62, "n", ["a"], [], 1.0, False, None, None]
        conn.execute(q.APPLY_LOCKED, (json.dumps([[lock]]), ["a"], [62], []))
    import anyio

    from jobd.store.postgres import open_store

    async def reopen() -> None:
        async with open_store(url):
            pass

    anyio.run(reopen)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(q.SELECT_VERSION).fetchone() == (str(SCHEMA_VERSION),)
        assert keys(conn, 0, 99) == before == {60 + k: v for k, v in KEYS.items()}
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (4,)
        assert conn.execute(
            "SELECT job_id, granted_at IS NOT NULL FROM lock_requests"
        ).fetchall() == [(62, True)]
        apply(conn, [PgUnit().insert_job(job(i)) for i in (72, 73)], bulk=True)
        assert keys(conn, 70, 79) == {72: KEYS[2], 73: KEYS[3]}
        triggers = dict(
            conn.execute(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
                " WHERE tgrelid = 'jobs'::regclass AND tgname IN"
                " ('jobs_keys_insert', 'jobs_due_update')"
            ).fetchall()
        )
    assert "FOR EACH STATEMENT" in triggers["jobs_keys_insert"]
    assert "AFTER UPDATE OF due_at ON" in triggers["jobs_due_update"]
