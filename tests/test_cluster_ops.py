"""Operations reach the job's node (SPEC §10): a cancel or pause sent to any node stops the
step on the node that runs it; the holder's refusal comes back as it is."""

from __future__ import annotations

import os

from tests import e2e
from tests.cluster import Cluster, runs


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_cancel_on_another_node_stops_the_step_where_it_runs(cluster: Cluster) -> None:
    cluster.start("a", "b")
    out, go = cluster.base / "out.txt", cluster.base / "go"
    job_id = cluster.submit("a", "mark", "-p", f"out={out}", "-p", f"path={go}")
    e2e.wait_until(lambda: [n for n, _ in runs(out)] == ["a"], what="the step running on a")
    pid = runs(out)[0][1]
    done = cluster.cli("b", "cancel", str(job_id))
    assert done.returncode == 0, done.stderr + done.stdout
    e2e.wait_until(lambda: _gone(pid), what="a's step process gone")
    shown = cluster.show("b", job_id)
    assert shown["state"] == "canceled"
    assert any(h["to"] == "canceled" for h in shown["history"])
    # Refused by the holder in its terms; a second cancel of a finished job is refused here.
    again = cluster.cli("b", "cancel", str(job_id))
    assert again.returncode != 0 and "canceled" in again.stderr


def test_a_pause_on_another_node_pauses_the_run_there(cluster: Cluster) -> None:
    cluster.start("a", "b")
    out, go = cluster.base / "out.txt", cluster.base / "go"
    job_id = cluster.submit("a", "mark", "-p", f"out={out}", "-p", f"path={go}")
    e2e.wait_until(lambda: [n for n, _ in runs(out)] == ["a"], what="the step running on a")
    done = cluster.cli("b", "pause", str(job_id))
    assert done.returncode == 0, done.stderr + done.stdout
    assert cluster.show("a", job_id)["state"] == "paused"
    go.touch()
    assert cluster.cli("b", "resume", str(job_id)).returncode == 0  # anyone may claim it now
    e2e.wait_until(lambda: cluster.show("b", job_id)["state"] == "completed", what="completed")
