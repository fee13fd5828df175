"""Schema 18 (``sql/migrate-18.sql``) on a real PostgreSQL: a database of schema 17 with held
locks and waiters in their queues is migrated with them intact, and what is granted after
follows every rule of SPEC §3.4 through the new one-statement request, grant, start and
release: FIFO per asset, shared holders together and behind an earlier exclusive request,
all-or-nothing with no overtaking, the start of a granted job written by its grant (for a
job of the writing node and for another node's), and the recheck of a busy asset.
"""

from __future__ import annotations

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


def drop(conn: Conn, name: str, job_id: int) -> None:
    apply(conn, PgUnit().lock_release(job_id, name))


def test_a_schema_17_database_keeps_its_locks_and_queues_and_serves_them(
    pg_empty_url: str,
) -> None:
    url = pg_empty_url
    schema_at(url, 17)
    with node(url, "a") as a, node(url, "b") as b:
        for job_id in (1, 3, 5, 6, 8):
            waiting_job(a, job_id)
        for job_id in (2, 4, 7):
            waiting_job(b, job_id)
        mixed_queues(a, b)
        before = a.execute(q.LOCK_ROWS).fetchall()
        assert held(a) == {
            1: True,
            2: False,
            3: False,
            4: False,
            5: False,
            6: True,
            7: False,
            8: False,
        }
    migrate(url)
    with node(url, "a") as a, node(url, "b") as b:
        assert a.execute(q.SELECT_VERSION).fetchone() == (str(SCHEMA_VERSION),)
        assert a.execute(q.LOCK_ROWS).fetchall() == before
        drop(a, "a", 1)  # both shared waiters, not the exclusive one behind them
        assert held(a) == {2: True, 3: True, 4: False, 5: False, 6: True, 7: False, 8: False}
        drop(b, "b", 2)
        assert held(a)[4] is False  # 3 still holds x, shared
        drop(a, "a", 3)  # node a grants b's job 4 and starts it as node b
        assert held(a) == {4: True, 5: False, 6: True, 7: False, 8: False}
        assert b.execute("SELECT state, node FROM jobs WHERE id = 4").fetchone() == (
            "running",
            "b",
        )
        drop(b, "b", 4)  # 5 granted and started by b's release (a's job, as node a)
        assert held(a) == {5: True, 6: True, 7: False, 8: False}
        assert a.execute(q.SELECT_HISTORY, (5,)).fetchall()[-1][1:] == (
            "waiting-for-lock",
            "running",
            "lock granted",
            "scheduler",
        )
        drop(a, "a", 6)  # 7 gets y and z at once; 8 still waits behind it
        assert held(a) == {5: True, 7: True, 8: False}
        assert a.execute(
            "SELECT asset, held FROM lock_assets WHERE job_id = 7 ORDER BY asset"
        ).fetchall() == [("y", True), ("z", True)]
        drop(b, "b", 7)
        assert held(a) == {5: True, 8: True}


def test_requests_after_the_upgrade_keep_fifo_shared_and_all_or_nothing(pg_url: str) -> None:
    with node(pg_url, "a") as a:
        for job_id in range(11, 17):
            waiting_job(a, job_id, S.QUEUED)
        ask(a, "a", 11, (), ("x",))
        ask(a, "a", 12, (), ("x",))  # shared holders together
        ask(a, "a", 13, ("x",))
        ask(a, "a", 14, (), ("x",))  # behind the exclusive 13
        ask(a, "a", 15, ("w",), ("x",))  # w is free, x is not: nothing held
        ask(a, "a", 16, ("w",))  # behind 15 on w
        assert held(a) == {11: True, 12: True, 13: False, 14: False, 15: False, 16: False}
        assert a.execute(
            "SELECT count(*) FROM lock_assets WHERE held AND asset = 'w'"
        ).fetchone() == (0,)
        drop(a, "a", 11)
        drop(a, "a", 12)
        assert held(a) == {13: True, 14: False, 15: False, 16: False}
        drop(a, "a", 13)  # 14 and 15 share x; 15 takes w too, 16 waits
        assert held(a) == {14: True, 15: True, 16: False}
        drop(a, "a", 15)
        assert held(a) == {14: True, 16: True}
        ask(a, "a", 14, (), ("x",))  # asked again: the place and the grant kept
        assert held(a) == {14: True, 16: True}


def test_a_busy_asset_is_rechecked_after_the_upgrade(pg_url: str) -> None:
    with node(pg_url, "a") as a, psycopg.connect(pg_url, autocommit=True) as other:
        ask(a, "a", 21, ("x",))
        ask(a, "a", 22, ("x", "y"))
        a.execute(q.listen_locks("a"))
        with other.transaction():  # another transaction changing y: 22 cannot be granted
            other.execute("SELECT pg_advisory_xact_lock(7316100, hashtext('y'))")
            drop(a, "a", 21)  # takes x's advisory lock only; 22's grant tries y's
        notices = [n.payload for n in a.notifies(timeout=1.0, stop_after=1)]
        assert notices == ["recheck 22 a"]
        assert held(a) == {22: False}
        apply(a, PgUnit().lock_regrant(22))  # as the node's recheck does
        assert held(a) == {22: True}
