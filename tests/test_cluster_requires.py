"""Workflow ``requires`` across real daemons on one PostgreSQL (SPEC §10): a node without
the tags leaves the job in ``pending`` with the reason in its history (``jobd show``), and
a node with them runs it (tests/cluster.py starts the nodes).
"""

from __future__ import annotations

from tests import e2e
from tests.cluster import CLUSTER_WORKFLOWS, Cluster

RENDER = """
[workflows.render]
requires = ["gpu"]
steps = [ { name = "render", action = "exec", params = { argv = [
  "sh", "-c", "echo $JOBD_TEST_NODE > {out}",
] } } ]
"""


def test_a_job_waits_for_a_node_with_its_tags_and_runs_there(cluster: Cluster) -> None:
    cluster.workflows = CLUSTER_WORKFLOWS + RENDER
    cluster.add("gpu", tags=["gpu"])
    cluster.start("edit", tags=["cpu"])
    out = cluster.base / "ran-on"
    job_id = cluster.submit("edit", "render", "-p", f"out={out}")
    shown = cluster.show("edit", job_id)
    assert shown["state"] == "pending"
    assert shown["history"][-1]["cause"] == (
        "due; waiting for a node with tags gpu (workflow render requires gpu; node edit has cpu)"
    )
    plain = cluster.submit("edit", "demo", "-p", "who=x")  # the node's own work goes by
    e2e.wait_until(lambda: cluster.show("edit", plain)["state"] == "completed", what="plain")
    assert cluster.show("edit", job_id)["state"] == "pending"
    cluster.start("gpu")
    e2e.wait_until(
        lambda: cluster.show("edit", job_id)["state"] == "completed", timeout=60, what="render"
    )
    assert out.read_text().strip() == "gpu"  # run by the node with the tag
    # With both up: the node with the tag hears of the pending job and runs it.
    again = cluster.base / "again"
    job_id = cluster.submit("edit", "render", "-p", f"out={again}")
    e2e.wait_until(
        lambda: cluster.show("edit", job_id)["state"] == "completed", timeout=60, what="again"
    )
    assert again.read_text().strip() == "gpu"
