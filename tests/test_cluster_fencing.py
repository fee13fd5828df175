"""Fencing under the faults a SIGKILL does not show (SPEC §10): a job never runs on two
nodes at once, and a node that was cut off comes back.

Each test runs a ``mark``/``escape`` job (tests/cluster.py: its step appends start/tick/end
lines with the node's name and its pid) and checks that no line of an attempt follows
the start of the next one (``overlapping``). The faults:

- a **silent partition** of node a (nothing crosses, nothing is closed: a's renewal hangs
  rather than fails, and the server keeps a's sessions): a's watchdog fences it, b takes
  the job over within lease + 5 s, and once the network is back a starts again although
  the server still holds a session of a's dead run (regression: it was refused with
  "another jobd daemon is using the database ... as node 'a'" until TCP keepalive);
- a **frozen node whose step left its process group** (``setsid``): the watchdog kills
  that process too (by its ``JOBD_FENCE`` mark), not only the step's group;
- **the server ends every session** (``pg_terminate_backend``, as a PostgreSQL restart or
  failover does): every node stops with a failure status (so that its service manager
  starts it again), and started again the nodes run the job once more, never twice at once.

The freeze, the cut connection and SIGKILL alone: tests/test_cluster_takeover.py.

Checked to fail without what they prove (2026-12-02): with no watchdog started, the
partition test, the escape test and test_cluster_takeover's freeze test fail on an
overlap (a's step ticking after b's began); with the watchdog's /proc scan off, the
escape test does; without the ending of an earlier run's sessions, the partition test's
restart is refused. (test_cluster_takeover's cut test passes without the watchdog: a
daemon that hears its connections close stops its steps itself; a silent partition
gives it nothing to hear.)
"""

from __future__ import annotations

import time

from tests import e2e
from tests.cluster import Cluster, assert_taken_over, overlapping, runs, start_marked

LEASE = 4.0  # short, yet enough for a loaded machine to renew in time
#: Node a's name lock (jobd/store/postgres/queries.py's NODE_LOCK) as pg_locks shows it.
NAME_LOCK_HOLDERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7316022"
    " AND objid = (hashtext(%s)::bigint & 4294967295)::oid AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def test_a_silently_partitioned_node_is_taken_over_and_rejoins_when_the_network_heals(
    cluster: Cluster,
) -> None:
    cluster.add("a", lease=LEASE, proxied=True)
    cluster.start("a", "b", lease=LEASE)
    job = start_marked(cluster, "a")
    cluster.partition("a")
    assert_taken_over(cluster, job, time.time(), LEASE)
    assert cluster.node("a").proc.wait(timeout=60) != 0
    assert "no lease renewal" in cluster.log("a")
    # The server never heard that a's run ended: its writer's session still holds a's name.
    assert cluster.sql(NAME_LOCK_HOLDERS, ("a",)) == [(1,)]

    cluster.restore("a")
    cluster.start("a")  # its earlier run's session is ended: the lease of that run is over
    assert "ended sessions of an earlier run" in cluster.log("a")
    nodes = {n["name"]: n["state"] for n in cluster.node("b").cli_json("nodes")["items"]}
    assert nodes == {"a": "up", "b": "up"}
    again = cluster.submit("a", "demo", "-p", "who=a")
    e2e.wait_until(
        lambda: cluster.show("a", again)["state"] == "completed", timeout=60, what="a works"
    )


def test_a_frozen_node_kills_the_processes_its_step_moved_out_of_its_group(
    cluster: Cluster,
) -> None:
    cluster.start("a", "b", lease=LEASE)
    job = start_marked(cluster, "a", "escape")
    cluster.freeze("a")
    assert_taken_over(cluster, job, time.time(), LEASE)
    cluster.thaw("a")
    assert cluster.node("a").proc.wait(timeout=30) != 0


def test_every_session_ended_by_the_server_stops_the_nodes_and_their_restart_runs_it_once(
    cluster: Cluster,
) -> None:
    cluster.start("a", "b", lease=LEASE)
    job_id, out, go = start_marked(cluster, "a")
    cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    for name in ("a", "b"):  # a failure status: systemd's Restart=on-failure applies
        assert cluster.node(name).proc.wait(timeout=60) != 0, cluster.log(name)
    cluster.start("a", "b")  # as their service manager would
    e2e.wait_until(lambda: len(runs(out)) == 2, timeout=60, what="the step run again")
    go.touch()
    e2e.wait_until(
        lambda: cluster.show("b", job_id)["state"] == "completed", timeout=60, what="completed"
    )
    assert len(runs(out)) == 2 and overlapping(out) == [], out.read_text()
