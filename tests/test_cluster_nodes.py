"""Nodes of a cluster: several daemons share one PostgreSQL database, each under its own
``[daemon] node`` name; a second daemon with a name already in use is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
