"""Takeover and fencing (SPEC §10): a node that dies, freezes or loses the database never
leaves its job running twice, and another node takes the job up after the lease.

Each test runs a ``mark`` job on node a (its step appends start/tick/end lines with the
node's name and the step's pid: tests/cluster.py), takes a out (SIGKILL, SIGSTOP, a cut
connection), and checks that b took the job over, that no line of a's attempt follows
the start of b's (no overlap: a's step was dead before b's began), and that the takeover
came within the lease + 5 s (from the database's own times).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests import e2e
from tests.cluster import Cluster, overlapping, runs

LEASE = 4.0  # short, yet enough for a loaded machine to renew in time


def _run_on_a(cluster: Cluster) -> tuple[int, Path, Path]:
    """A ``mark`` job running on a (submitted there: a claims it); its id, out file, gate."""
    out, go = cluster.base / "out.txt", cluster.base / "go"
    job_id = cluster.submit("a", "mark", "-p", f"out={out}", "-p", f"path={go}")
    e2e.wait_until(lambda: [n for n, _ in runs(out)] == ["a"], what="the step running on a")
    return job_id, out, go


def _taken_over_by_b(cluster: Cluster, job_id: int, out: Path, go: Path, since: float) -> None:
    e2e.wait_until(lambda: [n for n, _ in runs(out)] == ["a", "b"], what="b ran the step again")
    lost = cluster.sql("SELECT lost_at, lost_by FROM nodes WHERE name = 'a'")
    assert lost[0][1] == "b" and lost[0][0] is not None
    assert lost[0][0] - since <= LEASE + 5, f"taken over {lost[0][0] - since:.1f} s after"
    go.touch()
    e2e.wait_until(lambda: cluster.show("b", job_id)["state"] == "completed", what="completed")
    assert overlapping(out) == [], out.read_text()
    shown = cluster.show("b", job_id)
    assert any("loss of node a" in h["cause"] for h in shown["history"]), shown["history"]


def test_a_sigkilled_node_s_job_is_taken_over_and_never_overlaps(cluster: Cluster) -> None:
    cluster.start("a", "b", lease=LEASE)
    job_id, out, go = _run_on_a(cluster)
    cluster.kill("a")
    killed = time.time()
    _taken_over_by_b(cluster, job_id, out, go, killed)
    nodes = {n["name"]: n["state"] for n in cluster.node("b").cli_json("nodes")["items"]}
    assert nodes == {"a": "lost", "b": "up"}


def test_a_frozen_node_kills_its_own_step_before_its_lease_runs_out(cluster: Cluster) -> None:
    cluster.start("a", "b", lease=LEASE)
    job_id, out, go = _run_on_a(cluster)
    cluster.freeze("a")  # SIGSTOP: its watchdog still runs, and kills the step (and a)
    frozen = time.time()
    _taken_over_by_b(cluster, job_id, out, go, frozen)
    cluster.thaw("a")
    assert cluster.node("a").proc.wait(timeout=30) != 0  # fenced: it did not go on
    assert "no lease renewal" in cluster.log("a")


def test_a_node_that_loses_the_database_stops_its_step(cluster: Cluster) -> None:
    cluster.add("a", lease=LEASE, proxied=True)
    cluster.start("a", "b", lease=LEASE)
    job_id, out, go = _run_on_a(cluster)
    cluster.cut("a")
    cut = time.time()
    _taken_over_by_b(cluster, job_id, out, go, cut)
    assert cluster.node("a").proc.wait(timeout=30) != 0


def test_a_node_restarted_at_once_and_the_takeover_never_both_run_the_job(
    cluster: Cluster,
) -> None:
    """Killed and started again under its name before or after its lease ran out: either it
    recovers its own job or b takes it over first; the job runs again exactly once."""
    cluster.start("a", "b", lease=LEASE)
    job_id, out, go = _run_on_a(cluster)
    cluster.kill("a")
    cluster.start("a")
    e2e.wait_until(lambda: len(runs(out)) == 2, what="the step run again")
    go.touch()
    e2e.wait_until(lambda: cluster.show("a", job_id)["state"] == "completed", what="completed")
    assert len(runs(out)) == 2 and overlapping(out) == [], out.read_text()
