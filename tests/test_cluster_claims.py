"""Due work across nodes (SPEC §10): each job is claimed by exactly one node, and the nodes
with room take the jobs another node has no room for (``pending``, woken by NOTIFY)."""

from __future__ import annotations

from collections import Counter

from tests import e2e
from tests.cluster import Cluster, runs


def test_three_nodes_share_the_work_and_no_job_runs_twice(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.add(name, workers=2, daemon_extra="run_queue_size = 2")
    cluster.start("a", "b", "c")
    go = cluster.base / "go"
    outs = [cluster.base / f"job-{i}.txt" for i in range(12)]
    # All submitted to a: it keeps what it has room for (2 running, 2 queued), the rest is
    # pending, and b and c claim from there, each as much as it has room for: 12 jobs fill
    # the three nodes exactly.
    ids = [cluster.submit("a", "mark", "-p", f"out={out}", "-p", f"path={go}") for out in outs]
    e2e.wait_until(
        lambda: sum(bool(runs(out)) for out in outs) == 6, what="6 jobs running on 3 nodes"
    )
    running = Counter(node for out in outs for node, _ in runs(out))
    assert running == {"a": 2, "b": 2, "c": 2}
    go.touch()
    e2e.wait_until(
        lambda: all(cluster.show("b", i)["state"] == "completed" for i in ids), what="all done"
    )
    for out in outs:  # each ran once, on one node
        assert len(runs(out)) == 1, out.read_text()
    held = cluster.sql("SELECT node, count(*) FROM jobs GROUP BY node ORDER BY node")
    assert sum(n for _, n in held) == 12 and {node for node, _ in held} == {"a", "b", "c"}


def test_a_job_due_later_runs_on_another_node_when_its_submitter_is_gone(
    cluster: Cluster,
) -> None:
    cluster.start("a", "b")
    job_id = cluster.submit("a", "demo", "-p", "who=later", "--start", "+3s")
    cluster.kill("a")  # before it is due: it was never a's (confirmed jobs belong to nobody)
    e2e.wait_until(lambda: cluster.show("b", job_id)["state"] == "completed", what="completed")
    assert cluster.sql("SELECT node FROM jobs WHERE id = %s", (job_id,)) == [("b",)]
