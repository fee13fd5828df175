"""Schema 21 (``sql/migrate-21.sql``) on a real PostgreSQL: a batch's run of lock releases and
its run of lock requests are applied set-based (``jobd_lock_release_many``,
``jobd_lock_request_many``). A database of schema 20 with held locks and queues of waiters (of
two nodes; shared, exclusive, several assets; waiters whose grant starts them) is migrated with
them intact; then batches of several releases, and of several requests, grant what granting one
by one grants (SPEC §3.4: FIFO per asset, shared holders together, all or nothing), start the
writing node's jobs in the grant (running, the ``lock granted`` history row) and another node's
as that node, and a request asked again keeps its place.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobd.core.states import JobState as S
from jobd.store.postgres import queries as q
from jobd.store.postgres.migrate import SCHEMA_VERSION
from jobd.store.postgres.units import PgUnit
from tests.pgschema import (
    Conn,
    apply,
    ask,
    held,
    migrate,
    mixed_queues,
    node,
    schema_at,
    waiting_job,
)


def release(conn: Conn, name: str, *job_ids: int) -> None:
    """One batch: a unit releasing each of ``job_ids`` (node ``name``'s requests)."""
    assert apply(conn, *(PgUnit().lock_release(j, name) for j in job_ids)) == []


def requests(conn: Conn, name: str, *asks: tuple[int, tuple[str, ...], tuple[str, ...]]) -> None:
    """One batch: a unit asking for each (job, exclusive assets, shared assets)."""
    units = [PgUnit().lock_request(j, name, x, s, 1000.0 + j, None) for j, x, s in asks]
    assert apply(conn, *units) == []


def job_row(conn: Conn, job_id: int) -> tuple[Any, ...] | None:
    return conn.execute("SELECT state, node FROM jobs WHERE id = %s", (job_id,)).fetchone()


def last_history(conn: Conn, job_id: int) -> tuple[Any, ...]:
    return tuple(conn.execute(q.SELECT_HISTORY, (job_id,)).fetchall()[-1][1:])


GRANTED = ("waiting-for-lock", "running", "lock granted", "scheduler")


def test_a_schema_20_database_keeps_its_locks_and_batches_of_releases_serve_them(
    pg_empty_url: str,
) -> None:
    url = pg_empty_url
    schema_at(url, 20)
    with node(url, "a") as a, node(url, "b") as b:
        for job_id in (1, 3, 5, 6, 8, 9, 10):
            waiting_job(a, job_id)
        for job_id in (2, 4, 7, 11, 12):
            waiting_job(b, job_id)
        mixed_queues(a, b)
        ask(a, "a", 9, ("w",))
        ask(a, "a", 10, ("w",), start=True)  # a's job: started by a's release, set-based
        ask(b, "b", 11, ("v",))
        ask(b, "b", 12, ("v",), start=True)
        before = a.execute(q.LOCK_ROWS).fetchall()
        assert held(a) == {j: j in (1, 6, 9, 11) for j in range(1, 13)}
    migrate(url)
    with (
        node(url, "a") as a,
        node(url, "b") as b,
        psycopg.connect(url, autocommit=True) as listener,
    ):
        assert a.execute(q.SELECT_VERSION).fetchone() == (str(SCHEMA_VERSION),)
        assert a.execute(q.LOCK_ROWS).fetchall() == before
        listener.execute(q.listen_locks("a"))
        listener.execute(q.listen_locks("b"))
        release(a, "a", 1, 6, 9)  # x: both shared waiters; y: 7 takes y and z; w: 10 started
        notices = [n.payload for n in listener.notifies(timeout=1.0, stop_after=4)]
        assert sorted(p.split()[0] + p.split()[1] for p in notices) == [
            "granted2",
            "granted3",
            "granted7",
            "started10",
        ]
        assert held(a) == {
            2: True,
            3: True,
            4: False,
            5: False,
            7: True,
            8: False,
            10: True,
            11: True,
            12: False,
        }
        assert job_row(a, 10) == ("running", "a")
        assert last_history(a, 10) == GRANTED
        assert job_row(a, 7) == ("waiting-for-lock", "b")  # granted, not started: no start
        release(b, "b", 2, 11)  # 3 still holds x shared; 12 started by its own node
        assert held(a) == {3: True, 4: False, 5: False, 7: True, 8: False, 10: True, 12: True}
        assert job_row(b, 12) == ("running", "b")
        assert last_history(b, 12) == GRANTED
        release(a, "a", 3, 10)  # node a grants b's job 4 and starts it as node b
        assert held(a) == {4: True, 5: False, 7: True, 8: False, 12: True}
        assert job_row(a, 4) == ("running", "b")
        assert last_history(a, 4) == GRANTED
        release(b, "b", 4, 7)  # 5 (a's, shared) started by b's release; 8 gets z
        assert held(a) == {5: True, 8: True, 12: True}
        assert job_row(a, 5) == ("running", "a")
        assert last_history(a, 5) == GRANTED
        assert job_row(a, 8) == ("waiting-for-lock", "a")
        assert a.execute("SELECT count(*) FROM lock_assets WHERE NOT held").fetchone() == (0,)


def test_a_batch_of_requests_is_granted_as_one_by_one_and_keeps_their_order(
    pg_url: str,
) -> None:
    with node(pg_url, "a") as a:
        for job_id in range(31, 40):
            waiting_job(a, job_id, S.QUEUED)
        requests(
            a,
            "a",
            (31, ("x",), ()),  # x is free: granted
            (32, (), ("x",)),  # behind 31
            (33, (), ("y",)),
            (34, (), ("y",)),  # shared holders together
            (35, ("x",), ()),
            (36, ("w", "y"), ()),  # y is held shared: neither w nor y
        )
        assert held(a) == {31: True, 32: False, 33: True, 34: True, 35: False, 36: False}
        order = a.execute("SELECT job_id FROM lock_requests ORDER BY seq").fetchall()
        assert [r[0] for r in order] == [31, 32, 33, 34, 35, 36]
        assert a.execute(
            "SELECT count(*) FROM lock_assets WHERE held AND asset = 'w'"
        ).fetchone() == (0,)
        # A job asked again (its place and grant kept) beside new ones: one by one, as before;
        # a job named twice in one batch asks once.
        requests(a, "a", (31, ("x",), ()), (37, ("w",), ()), (38, ("v",), ()), (38, ("v",), ()))
        assert held(a) == {
            31: True,
            32: False,
            33: True,
            34: True,
            35: False,
            36: False,
            37: False,  # behind 36 on w
            38: True,
        }
        order = a.execute("SELECT job_id FROM lock_requests ORDER BY seq").fetchall()
        assert [r[0] for r in order] == [31, 32, 33, 34, 35, 36, 37, 38]
        release(a, "a", 31, 33, 34)  # 32 shared on x (35 behind it); 36 takes w and y
        assert held(a) == {32: True, 35: False, 36: True, 37: False, 38: True}


def test_a_batch_of_requests_tells_the_node_of_each_grant(pg_url: str) -> None:
    with node(pg_url, "a") as a, psycopg.connect(pg_url, autocommit=True) as listener:
        for job_id in (41, 42, 43):
            waiting_job(a, job_id, S.QUEUED)
        listener.execute(q.listen_locks("a"))
        requests(a, "a", (41, ("p",), ()), (42, ("p",), ()), (43, ("r",), ()))
        notices = [n.payload for n in listener.notifies(timeout=1.0, stop_after=2)]
        assert sorted(notices) == ["granted 41 a", "granted 43 a"]
        assert held(a) == {41: True, 42: False, 43: True}
