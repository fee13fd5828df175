"""Schema 25 (``sql/migrate-25.sql``) on a real PostgreSQL: a lock request's start is told to
its node only while it stands (its job ``running`` as that node). A schema-24 database holds
a request whose start recovery has since undone (the job interrupted, queued and waiting
again, the request still granted); after the upgrade, asking again is answered ``granted``
(the node writes ``running`` itself) and the node's poll finds no start for it, while a
start that stands is still told as one."""

from __future__ import annotations

import psycopg

from jobd.core.states import JobState as S
from jobd.store.postgres import queries as q
from jobd.store.postgres.units import PgUnit
from tests.pgschema import Conn, apply, ask, migrate, node, schema_at, waiting_job


def _states(a: Conn, *ids: int) -> list[str]:
    rows = a.execute("SELECT state FROM jobs WHERE id = ANY(%s) ORDER BY id", (list(ids),))
    return [r[0] for r in rows.fetchall()]


def _interrupt(a: Conn, job_id: int) -> None:
    """What recovery does to a run it finds: back to confirmed, due, then waiting again."""
    for frm, to in (
        (S.RUNNING, S.CONFIRMED),
        (S.CONFIRMED, S.QUEUED),
        (S.QUEUED, S.WAITING_FOR_LOCK),
    ):
        assert apply(a, PgUnit().transition(job_id, frm, to, 3.0, "recovery", "t")) == []


def _told(url: str, a: Conn, job_id: int, asset: str) -> str:
    """What node a hears when it asks for ``job_id``'s lock again."""
    row = a.execute("SELECT jobd_lock_channel('a')").fetchone()
    assert row is not None
    with psycopg.connect(url, autocommit=True) as ear:
        ear.execute(f'LISTEN "{row[0]}"')
        ask(a, "a", job_id, (asset,), start=True)
        heard = [n.payload for n in ear.notifies(timeout=10, stop_after=1)]
    assert len(heard) == 1, heard
    return heard[0]


def test_a_start_recovery_undid_is_told_as_a_grant(pg_empty_url: str) -> None:
    url = pg_empty_url
    schema_at(url, 24)
    with node(url, "a") as a:
        for job_id, asset in ((1, "x"), (2, "y")):
            waiting_job(a, job_id)
            ask(a, "a", job_id, (asset,), start=True)  # free: granted and started at once
        assert _states(a, 1, 2) == ["running", "running"]
        _interrupt(a, 1)  # 1's start no longer stands; 2's does
    migrate(url)
    with node(url, "a") as a:
        assert _told(url, a, 1, "x") == "granted 1 a"
        assert _told(url, a, 2, "y").startswith("started 2 a ")
        starts = [r[0] for r in a.execute(q.NODE_STARTS, ("a",)).fetchall()]
        assert starts == [2]
        assert _states(a, 1, 2) == ["waiting-for-lock", "running"]
