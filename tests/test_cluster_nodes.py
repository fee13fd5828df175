"""Nodes of a cluster: several daemons share one PostgreSQL database, each under its own
``[daemon] node`` name; a second daemon with a name already in use is refused, unless it
is a session left behind by that node's finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from jobd.core.errors import StoreError
from jobd.store.postgres import open_store as open_postgres
from jobd.store.postgres.opening import named
from tests import e2e
from tests.cluster import Cluster


def test_two_nodes_share_one_database_and_see_each_other_s_jobs(cluster: Cluster) -> None:
    cluster.start("a", "b")
    job_id = cluster.submit("a", "demo", "-p", "who=a")
    e2e.wait_until(lambda: cluster.show("b", job_id)["state"] == "completed", what="completed")
    cluster.stop("a")
    cluster.stop("b")


def test_a_second_daemon_with_the_same_node_name_is_refused(cluster: Cluster) -> None:
    cluster.start("a")
    twin = cluster.add("twin")
    twin.config.write_text(twin.config.read_text().replace('node = "twin"', 'node = "a"'))
    done = e2e.run_daemon_to_exit(twin.config)
    assert done.returncode != 0
    out = done.stderr + done.stdout
    assert "as node 'a'" in out and "jobd_test_" in out, out  # names the node and the database


def _nodes(cluster: Cluster, on: str) -> dict[str, dict[str, Any]]:
    listed = cluster.node(on).cli_json("nodes")
    return {node["name"]: node for node in listed["items"]}


def test_jobd_nodes_shows_every_node_with_its_tags_state_and_workers(cluster: Cluster) -> None:
    cluster.add("a", tags=["gpu", "sdi"], workers=3)
    cluster.start("a", "b")
    nodes = _nodes(cluster, "b")
    assert sorted(nodes) == ["a", "b"]
    assert nodes["a"]["tags"] == ["gpu", "sdi"] and nodes["a"]["workers"] == 3
    assert {n["state"] for n in nodes.values()} == {"up"}
    assert nodes["a"]["renewed_at"].startswith("20") and nodes["a"]["running_jobs"] == []
    table = cluster.cli("a", "nodes")
    assert table.returncode == 0, table.stderr
    assert "gpu, sdi" in table.stdout and "LAST RENEWAL" in table.stdout
    cluster.stop("b")  # a clean stop: the node has left
    e2e.wait_until(lambda: _nodes(cluster, "a")["b"]["state"] == "left", what="b left")
    cluster.stop("a")


def test_a_daemon_on_sqlite_shows_itself_as_its_only_node(base: Path) -> None:
    with e2e.running_daemon(base, daemon_extra='node = "solo"\ntags = ["tape"]') as daemon:
        listed = daemon.cli_json("nodes")["items"]
    assert [(n["name"], n["tags"], n["state"]) for n in listed] == [("solo", ["tape"], "up")]


# ---------------------------------------------------------------- an earlier run's sessions
#: A session as a node's daemon opens it: named after the node, holding the node's name.
NAME_LOCK = "SELECT pg_try_advisory_lock(7316022, hashtext(%s))"
JOIN = "SELECT jobd_node_join(%s, '{}', 1, 1, %s, 'api', 1, 'host')"
EXPIRED = "SELECT renewed_at + lease_s <= jobd_now() FROM nodes WHERE name = %s"


async def _session_of(url: str, node: str, *, lock: bool) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(named(url, node), autocommit=True)
    if lock:
        row = await (await conn.execute(NAME_LOCK, (node,))).fetchone()
        assert row == (True,)
    return conn


async def _alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    try:
        await conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


async def test_a_start_ends_the_sessions_of_its_node_s_finished_run_and_no_others(
    pg_url: str,
) -> None:
    """A daemon whose host lost the network leaves sessions the server keeps (until TCP
    keepalive, hours): the node's next start ends those of a run whose lease is over
    (regression: it was refused as "another jobd daemon"), never those of a run whose lease
    holds, nor sessions newer than the run's last renewal."""
    async with open_postgres(pg_url, single=False):
        pass  # the schema
    live = await _session_of(pg_url, "live", lock=True)
    gone = await _session_of(pg_url, "gone", lock=True)
    gone_reader = await _session_of(pg_url, "gone", lock=False)
    await live.execute(JOIN, ("live", 3600.0))
    await gone.execute(JOIN, ("gone", 0.2))
    newer = await _session_of(pg_url, "gone", lock=False)  # opened after that run's renewal
    with anyio.fail_after(30):
        while (await (await live.execute(EXPIRED, ("gone",))).fetchone()) != (True,):
            await anyio.sleep(0.05)  # the 0.2 s lease running out, seen by the server's clock

    with pytest.raises(StoreError, match="as node 'live'"):
        async with open_postgres(pg_url, node="live"):
            pass
    async with open_postgres(pg_url, node="gone"):
        assert not await _alive(gone) and not await _alive(gone_reader)
        assert await _alive(live) and await _alive(newer)
    for conn in (live, gone, gone_reader, newer):
        await conn.close()


async def test_a_node_closed_cleanly_may_open_again_at_once(pg_url: str) -> None:
    """A clean close gives the node's name back before it returns (regression: the name
    stayed held until the closed session's backend had exited, so a store opened right
    after, as `systemctl restart` or the next test does, was refused as "another jobd
    daemon" now and then). While a store is open, its name is refused to a second one."""
    for _ in range(30):
        async with open_postgres(pg_url, node="again"):
            with pytest.raises(StoreError, match="as node 'again'"):
                async with open_postgres(pg_url, node="again"):
                    pass
