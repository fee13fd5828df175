"""Operations reach the job's node (SPEC §10), with real daemons on one PostgreSQL.

A step runs on node b (a ``mark`` job: a shell that records its node and pid, then waits
for a gate file); operations sent to node a's API, singly and in a batch, stop it there
(its process is gone, the job ``canceled``); a job held by no node is operated on by the
node that received the operation; a holder that does not answer gives the caller a clear
error naming it, unless the job is taken over meanwhile (then the operation is done on the
job where it is now).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from jobd.client.remote import ApiError, Client, Endpoint
from tests import e2e
from tests.cluster import Cluster, runs

DEADLINE = 60.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _api(cluster: Cluster, node: str) -> Client:
    return Client(Endpoint(socket=cluster.node(node).layout.socket), timeout=120)


def _mark(cluster: Cluster, node: str, name: str) -> tuple[int, Path]:
    """A ``mark`` job submitted to ``node`` (which runs it), and its record file."""
    out = cluster.base / f"{name}.out"
    job_id = cluster.submit(node, "mark", "-p", f"out={out}", "-p", f"path={cluster.base / 'go'}")
    return job_id, out


def _running_on(out: Path, node: str) -> int:
    """The pid of the step once it runs on ``node`` (the only attempt so far)."""
    e2e.wait_until(
        lambda: bool(runs(out)), what=f"the step of {out.name} started", timeout=DEADLINE
    )
    (ran,) = runs(out)
    assert ran[0] == node, runs(out)
    return ran[1]


def _state(cluster: Cluster, node: str, job_id: int, state: str) -> dict[str, Any]:
    try:
        e2e.wait_until(
            lambda: cluster.show(node, job_id)["state"] == state,
            what=f"job {job_id} {state}",
            timeout=DEADLINE,
        )
    except AssertionError as exc:  # say where it stood, and what each node logged
        logs = "\n".join(f"--- node {n}\n{cluster.log(n)[-6000:]}" for n in cluster.layouts)
        raise AssertionError(f"{exc}: {cluster.show(node, job_id)}\n{logs}") from None
    return cluster.show(node, job_id)


def test_a_cancel_through_another_nodes_api_stops_the_step_where_it_runs(
    cluster: Cluster,
) -> None:
    cluster.start("a", "b")
    job_id, out = _mark(cluster, "b", "one")
    pid = _running_on(out, "b")
    with _api(cluster, "a") as api:
        answer = api.operate(job_id, "cancel")
    assert answer is not None and answer["id"] == job_id
    assert answer["state"] in ("cancel-requested", "canceled")  # the job as after the change
    e2e.wait_until(lambda: _gone(pid), what="b's step process gone", timeout=DEADLINE)
    shown = _state(cluster, "a", job_id, "canceled")
    assert [h["actor"] for h in shown["history"] if h["to"] == "canceled"]
    assert cluster.sql("SELECT node FROM jobs WHERE id = %s", (job_id,)) == [("b",)]
    # The holder's refusal comes back in its terms, through any node.
    with _api(cluster, "a") as api, pytest.raises(ApiError) as refused:
        api.operate(job_id, "pause")
    assert refused.value.status == 409 and "canceled" in str(refused.value)


def test_a_batch_through_one_node_reaches_every_holder(cluster: Cluster) -> None:
    cluster.start("a", "b")
    on_b = [_mark(cluster, "b", f"b{i}") for i in range(2)]
    on_a = [_mark(cluster, "a", "a0")]
    pids = [_running_on(out, node) for node, jobs in (("b", on_b), ("a", on_a)) for _, out in jobs]
    later = cluster.submit("b", "demo", "-p", "who=later", "--start", "2099-01-01T00:00:00+00:00")
    ids = [job_id for job_id, _ in on_b + on_a] + [later]
    with _api(cluster, "a") as api:
        answer = api.operate_batch("cancel", ids=ids)
    assert sorted(answer["done"]) == sorted(ids) and answer["refused"] == [], answer
    for pid in pids:
        e2e.wait_until(lambda pid=pid: _gone(pid), what=f"step {pid} gone", timeout=DEADLINE)
    for job_id in ids:
        _state(cluster, "b", job_id, "canceled")
    # A second time every job is refused, each in its own terms, wherever it ran.
    with _api(cluster, "b") as api:
        again = api.operate_batch("cancel", ids=ids)
    assert again["done"] == [] and sorted(r["id"] for r in again["refused"]) == sorted(ids)


def test_pause_and_resume_through_another_node(cluster: Cluster) -> None:
    cluster.start("a", "b")
    job_id, out = _mark(cluster, "b", "paused")
    pid = _running_on(out, "b")
    assert cluster.cli("a", "pause", str(job_id)).returncode == 0
    e2e.wait_until(lambda: _gone(pid), what="b's step process gone", timeout=DEADLINE)
    _state(cluster, "a", job_id, "paused")
    (cluster.base / "go").touch()
    done = cluster.cli("a", "resume", str(job_id))
    assert done.returncode == 0, done.stderr + done.stdout
    _state(cluster, "b", job_id, "completed")


def test_an_operation_on_a_frozen_holder_is_done_after_the_takeover(cluster: Cluster) -> None:
    cluster.start("a", "b", lease=3)
    job_id, out = _mark(cluster, "b", "frozen")
    pid = _running_on(out, "b")
    cluster.freeze("b")
    try:
        done = cluster.cli("a", "cancel", str(job_id))
        assert done.returncode == 0, done.stderr + done.stdout
        _state(cluster, "a", job_id, "canceled")
        # b's watchdog killed its step before b's lease ran out (cluster-core).
        e2e.wait_until(lambda: _gone(pid), what="b's step process gone", timeout=DEADLINE)
    finally:
        cluster.thaw("b")


def test_a_holder_that_does_not_answer_is_named_in_the_error(cluster: Cluster) -> None:
    cluster.start("a", "b", lease=120)  # no takeover while the caller waits
    job_id, out = _mark(cluster, "b", "silent")
    _running_on(out, "b")
    cluster.freeze("b")
    try:
        with _api(cluster, "a") as api, pytest.raises(ApiError) as refused:
            api.operate(job_id, "cancel")
        assert refused.value.status == 503
        assert "'b'" in str(refused.value) and refused.value.code == "node-unavailable"
        assert cluster.show("a", job_id)["state"] == "running"  # a did not touch b's step
    finally:
        cluster.thaw("b")
    (cluster.base / "go").touch()
    _state(cluster, "a", job_id, "completed")


def test_answers_to_a_big_batch_fit_notify_payloads() -> None:
    import json

    from jobd.core.errors import InvalidTransition
    from jobd.core.states import JobState
    from jobd.engine.forward import replies
    from jobd.store.news import MAX_PAYLOAD

    outcome: dict[int, Any] = {}
    for job_id in range(10**15, 10**15 + 3000):
        refused = job_id % 3 == 0
        error = InvalidTransition("pause", JobState.COMPLETED, ["delete"] * 400, job_id=job_id)
        outcome[job_id] = error if refused else None
    message = {"from": "node-a", "rid": "node-a:7"}
    payloads = replies(message, outcome)
    assert all(len(p.encode()) < MAX_PAYLOAD for p in payloads)
    answers = [json.loads(p) for p in payloads]
    assert all(a["to"] == "node-a" and a["rid"] == "node-a:7" for a in answers)
    done = [i for a in answers for i in a["done"]]
    refused = [r[0] for a in answers for r in a["refused"]]
    assert sorted(done + refused) == sorted(outcome)
    assert set(refused) == {i for i, e in outcome.items() if e is not None}
