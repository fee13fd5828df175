"""Nodes of a cluster: several daemons share one PostgreSQL database, each under its own
``[daemon] node`` name; a second daemon with a name already in use is refused."""

from __future__ import annotations

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
