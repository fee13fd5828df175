"""Schema 22 (``sql/migrate-22.sql``) on a real PostgreSQL: each lock notification goes to the
channel of the node it is for (``jobd_lock_channel``), not to every node. A schema-21 database
with holders and waiters of two nodes is migrated; a release then tells each node of its own
grants and starts on its own channel, and nothing on the other node's or on the old common
channel. The migration restates seven functions: they are checked to be their earlier
definitions with only the notification changed.
"""

from __future__ import annotations

import re

import psycopg

from jobd.store.postgres import queries as q
from jobd.store.postgres.migrate import migrations
from jobd.store.postgres.units import PgUnit
from tests.pgschema import Conn, apply, ask, held, migrate, node, schema_at, waiting_job

#: A node name longer than a channel name may be (63 bytes): its channel still fits.
LONG = "node-" + "n" * 80
_FUNCTION = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(.*?\$\$.*?\$\$;", re.S)


def notices(conn: Conn, expected: int) -> list[str]:
    """The ``expected`` notifications ``conn`` is told (waited for with a deadline that only
    a stuck server reaches), then whatever else comes in a short window: a notification sent
    where it should not be shows there (a late one could only make this pass, never fail)."""
    told = [n.payload for n in conn.notifies(timeout=30.0, stop_after=expected)] if expected else []
    return told + [n.payload for n in conn.notifies(timeout=0.3)]


def test_the_restated_functions_change_only_their_notifications() -> None:
    earlier: dict[str, str] = {}
    for number, sql in migrations().items():
        if number < 22:
            earlier |= {m.group(1): m.group(0) for m in _FUNCTION.finditer(sql)}
    restated = {m.group(1): m.group(0) for m in _FUNCTION.finditer(migrations()[22])}
    assert set(restated) == {
        "jobd_lock_channel",
        "jobd_lock_notify",
        "jobd_lock_tell",
        "jobd_lock_start",
        "jobd_lock_try",
        "jobd_lock_request",
        "jobd_lock_start_many",
        "jobd_lock_request_many",
        "jobd_lock_release_many",
    }
    for name, text in restated.items():
        if name in ("jobd_lock_channel", "jobd_lock_notify"):
            continue
        before = re.sub(r"^CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", earlier[name])
        assert "pg_notify('jobd_locks', " in before, name
        assert text == before.replace("pg_notify('jobd_locks', ", "jobd_lock_notify("), name
    # and no function the schema keeps still notifies the old common channel
    latest = earlier | restated
    assert [n for n, text in latest.items() if "'jobd_locks'" in text] == []


def test_each_node_hears_its_own_grants_after_the_upgrade(pg_empty_url: str) -> None:
    url = pg_empty_url
    schema_at(url, 21)
    with node(url, "a") as a, node(url, LONG) as b:
        for job_id in (1, 3):
            waiting_job(a, job_id)
        for job_id in (2, 4):
            waiting_job(b, job_id)
        ask(a, "a", 1, ("x",))
        ask(b, LONG, 2, ("x",), start=True)  # b's job, started by a's release
        ask(b, LONG, 4, ("y",))
        ask(a, "a", 3, ("y",))
    migrate(url)
    with (
        node(url, "a") as a,
        psycopg.connect(url, autocommit=True) as hears_a,
        psycopg.connect(url, autocommit=True) as hears_b,
        psycopg.connect(url, autocommit=True) as hears_all,
    ):
        hears_a.execute(q.listen_locks("a"))
        hears_b.execute(q.listen_locks(LONG))
        hears_all.execute("LISTEN jobd_locks")  # the channel before schema 22
        assert apply(a, PgUnit().lock_release(1, "a")) == []
        with node(url, LONG) as b:
            assert apply(b, PgUnit().lock_release(4, LONG)) == []
        assert held(a) == {2: True, 3: True}
        told_b = notices(hears_b, 1)
        assert [p.split()[:3] for p in told_b] == [["started", "2", LONG]]
        assert notices(hears_a, 1) == ["granted 3 a"]
        assert notices(hears_all, 0) == []


def test_the_channel_is_the_same_in_python_and_in_the_schema(pg_url: str) -> None:
    names = ["a", "gpu-01", LONG, "nœud-é"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT array_agg(jobd_lock_channel(n)) FROM unnest(%s::text[]) n", (names,)
        )
        in_sql = row.fetchone()
    assert in_sql == ([q.lock_channel(name) for name in names],)
    assert all(len(q.lock_channel(name).encode()) <= 63 for name in names)
