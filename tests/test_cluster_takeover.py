"""Takeover and fencing (SPEC §10): a node that dies, freezes or loses the database never
leaves its job running twice, and another node takes the job up after the lease.

Each test runs a ``mark`` job on node a (its step appends start/tick/end lines with the
node's name and the step's pid: tests/cluster.py), takes a out (SIGKILL, SIGSTOP, a cut
connection), and checks that b took the job over, that no line of a's attempt follows
the start of b's (no overlap: a's step was dead before b's began), and that the takeover
came within the lease + 5 s (from the database's own times). More faults (a silent
partition, a step that left its process group, the server ending every session):
tests/test_cluster_fencing.py.
"""

from __future__ import annotations

import time

from tests import e2e
from tests.cluster import Cluster, assert_taken_over, overlapping, runs, start_marked

LEASE = 4.0  # short, yet enough for a loaded machine to renew in time


def test_a_sigkilled_node_s_job_is_taken_over_and_never_overlaps(cluster: Cluster) -> None:
    cluster.start("a", "b", lease=LEASE)
    job = start_marked(cluster, "a")
    cluster.kill("a")
    assert_taken_over(cluster, job, time.time(), LEASE)
    nodes = {n["name"]: n["state"] for n in cluster.node("b").cli_json("nodes")["items"]}
    assert nodes == {"a": "lost", "b": "up"}


def test_a_frozen_node_kills_its_own_step_before_its_lease_runs_out(cluster: Cluster) -> None:
    cluster.start("a", "b", lease=LEASE)
    job = start_marked(cluster, "a")
    cluster.freeze("a")  # SIGSTOP: its watchdog still runs, and kills the step (and a)
    assert_taken_over(cluster, job, time.time(), LEASE)
    cluster.thaw("a")
    assert cluster.node("a").proc.wait(timeout=30) != 0  # fenced: it did not go on
    assert "no lease renewal" in cluster.log("a")


def test_a_node_that_loses_the_database_stops_its_step(cluster: Cluster) -> None:
    cluster.add("a", lease=LEASE, proxied=True)
    cluster.start("a", "b", lease=LEASE)
    job = start_marked(cluster, "a")
    cluster.cut("a")
    assert_taken_over(cluster, job, time.time(), LEASE)
    assert cluster.node("a").proc.wait(timeout=30) != 0


def test_a_node_restarted_at_once_and_the_takeover_never_both_run_the_job(
    cluster: Cluster,
) -> None:
    """Killed and started again under its name before or after its lease ran out: either it
    recovers its own job or b takes it over first; the job runs again exactly once."""
    cluster.start("a", "b", lease=LEASE)
    job_id, out, go = start_marked(cluster, "a")
    cluster.kill("a")
    cluster.start("a")
    e2e.wait_until(lambda: len(runs(out)) == 2, timeout=60, what="the step run again")
    go.touch()
    e2e.wait_until(
        lambda: cluster.show("a", job_id)["state"] == "completed", timeout=60, what="completed"
    )
    assert len(runs(out)) == 2 and overlapping(out) == [], out.read_text()
