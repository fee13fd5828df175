"""Asset locks across real ``jobd run`` daemons on one real PostgreSQL (SPEC §3.4, §10).

Each step is a subprocess that appends ``start <node> <tag> <time>`` to one file, waits for
a gate file, then appends ``end <node> <tag> <time>``: the file is what ran where, in which
order, and shows whether two jobs ever held an exclusive asset at once. Jobs are queued in a
known order on different nodes (each seen ``waiting-for-lock`` before the next is
submitted), and the release of a holder on one node must start the next waiter on another
(by NOTIFY: the assertions are on order and completeness, the speed is the benchmark's).
"""

from __future__ import annotations

import itertools

from tests import e2e
from tests.cluster import CLUSTER_WORKFLOWS, Cluster, overlapping, runs

WORKFLOWS = (
    CLUSTER_WORKFLOWS
    + """
[workflows.lockmark]
steps = [ { name = "mark", action = "exec", params = { argv = [
  "sh", "-c",
  "echo start $JOBD_TEST_NODE {tag} $(date +%s.%N) $$ >> {out}; \
while [ ! -e {gate} ]; do sleep 0.02; done; echo end $JOBD_TEST_NODE {tag} $(date +%s.%N) >> {out}",
] } } ]
"""
)


def _cluster(cluster: Cluster, *names: str) -> Cluster:
    cluster.workflows = WORKFLOWS
    cluster.start(*names)
    return cluster


def _submit(cluster: Cluster, node: str, tag: str, gate: str, *flags: str) -> int:
    out, gate_path = cluster.base / "marks", cluster.base / gate
    return cluster.submit(
        node, "lockmark", "-p", f"tag={tag}", "-p", f"out={out}", "-p", f"gate={gate_path}", *flags
    )


def _state(cluster: Cluster, node: str, job_id: int, state: str) -> None:
    e2e.wait_until(
        lambda: cluster.show(node, job_id)["state"] == state,
        what=f"job {job_id} {state}",
        timeout=60,
    )


def _marks(cluster: Cluster) -> list[tuple[str, str, str, float]]:
    """``(event, node, tag, time)`` per line, in the order written."""
    rows = []
    for line in (cluster.base / "marks").read_text().splitlines():
        event, node, tag, at = line.split()[:4]
        rows.append((event, node, tag, float(at)))
    return rows


def _one_at_a_time(marks: list[tuple[str, str, str, float]]) -> list[tuple[str, str]]:
    """The ``(node, tag)`` of each holder in turn, checking that each ended before the
    next began (no two holders of the exclusive asset at once)."""
    for (e1, _, t1, _), (e2, _, t2, _) in itertools.pairwise(marks):
        if e1 == "start":
            assert (e2, t2) == ("end", t1), f"{t2} began while {t1} held the asset: {marks}"
    return [(node, tag) for event, node, tag, _ in marks if event == "start"]


def test_waiters_on_three_nodes_hold_the_asset_in_the_order_they_queued(
    cluster: Cluster,
) -> None:
    _cluster(cluster, "a", "b", "c")
    holder = _submit(cluster, "a", "h", "gate", "--asset", "x")
    _state(cluster, "a", holder, "running")
    order = [("b", "w1"), ("c", "w2"), ("a", "w3"), ("b", "w4"), ("c", "w5")]
    waiters = []
    for node, tag in order:
        job_id = _submit(cluster, node, tag, "open", "--asset", "x")
        _state(cluster, node, job_id, "waiting-for-lock")
        waiters.append((node, job_id))
    locks = cluster.node("c").cli_json("locks")["items"]
    assert [(w["node"], w["position"]) for w in locks[0]["waiters"]] == [
        (node, i) for i, (node, _) in enumerate(order, 1)
    ]
    assert [(h["job_id"], h["node"]) for h in locks[0]["holders"]] == [(holder, "a")]
    shown = cluster.cli("c", "locks").stdout  # the table names each one's node
    assert f"{holder}:exclusive on a" in shown and f"{waiters[0][1]}:exclusive on b" in shown
    (cluster.base / "open").write_text("")
    (cluster.base / "gate").write_text("")  # the holder ends on a; w1 starts on b
    for node, job_id in waiters:
        _state(cluster, node, job_id, "completed")
    assert _one_at_a_time(_marks(cluster)) == [("a", "h"), *order]
    assert cluster.node("b").cli_json("locks")["items"] == []
    assert cluster.sql("SELECT count(*) FROM lock_requests") == [(0,)]


def test_shared_locks_on_two_nodes_are_held_together(cluster: Cluster) -> None:
    _cluster(cluster, "a", "b")
    r1 = _submit(cluster, "a", "r1", "gate", "--shared-asset", "x")
    r2 = _submit(cluster, "b", "r2", "gate", "--shared-asset", "x")
    _state(cluster, "a", r1, "running")
    _state(cluster, "b", r2, "running")  # both hold x at once
    writer = _submit(cluster, "b", "w", "open", "--asset", "x")
    _state(cluster, "b", writer, "waiting-for-lock")
    reader = _submit(cluster, "a", "r3", "open", "--shared-asset", "x")
    _state(cluster, "a", reader, "waiting-for-lock")  # behind the earlier exclusive one
    (cluster.base / "open").write_text("")
    (cluster.base / "gate").write_text("")
    _state(cluster, "b", writer, "completed")
    _state(cluster, "a", reader, "completed")
    starts = [tag for event, _, tag, _ in _marks(cluster) if event == "start"]
    assert set(starts[:2]) == {"r1", "r2"} and starts[2:] == ["w", "r3"]


def test_all_or_nothing_and_lock_timeout_across_nodes(cluster: Cluster) -> None:
    _cluster(cluster, "a", "b")
    holder = _submit(cluster, "a", "h", "gate", "--asset", "x")
    _state(cluster, "a", holder, "running")
    both = _submit(cluster, "b", "xy", "open", "--asset", "x", "--asset", "y")
    _state(cluster, "b", both, "waiting-for-lock")  # holds nothing meanwhile, not even y
    only_y = _submit(cluster, "a", "y", "open", "--asset", "y")
    _state(cluster, "a", only_y, "waiting-for-lock")  # y is free, but xy asked first
    impatient = _submit(cluster, "b", "late", "open", "--asset", "y", "--lock-timeout", "0.5")
    _state(cluster, "b", impatient, "failed")
    assert cluster.show("b", impatient)["error"]["code"] == "lock-timeout"
    (cluster.base / "open").write_text("")
    (cluster.base / "gate").write_text("")
    _state(cluster, "b", both, "completed")
    _state(cluster, "a", only_y, "completed")
    assert _one_at_a_time(_marks(cluster)) == [("a", "h"), ("b", "xy"), ("a", "y")]


def test_a_node_that_leaves_hands_its_waiter_on_in_its_place(cluster: Cluster) -> None:
    """b stops (SIGTERM) while its job waits for x: a takes the job over, and the request
    stays where it was in x's queue, as a's; it runs before the later waiter."""
    _cluster(cluster, "a", "b")
    holder = _submit(cluster, "a", "h", "gate", "--asset", "x")
    _state(cluster, "a", holder, "running")
    first = _submit(cluster, "b", "w1", "open", "--asset", "x")
    _state(cluster, "b", first, "waiting-for-lock")
    second = _submit(cluster, "a", "w2", "open", "--asset", "x")
    _state(cluster, "a", second, "waiting-for-lock")
    cluster.stop("b")
    e2e.wait_until(
        lambda: (
            cluster.sql("SELECT node FROM lock_requests WHERE job_id = %s", (first,)) == [("a",)]
        ),
        what="b's waiter taken over by a",
        timeout=60,
    )
    locks = cluster.node("a").cli_json("locks")["items"]
    assert [(w["job_id"], w["node"]) for w in locks[0]["waiters"]] == [(first, "a"), (second, "a")]
    (cluster.base / "open").write_text("")
    (cluster.base / "gate").write_text("")
    _state(cluster, "a", first, "completed")
    _state(cluster, "a", second, "completed")
    assert _one_at_a_time(_marks(cluster)) == [("a", "h"), ("a", "w1"), ("a", "w2")]


def test_a_killed_holders_lock_goes_to_the_waiter_on_another_node_after_takeover(
    cluster: Cluster,
) -> None:
    """SIGKILL the node holding the asset: once b took a over (after a's lease, a's step
    killed by a's watchdog), the waiter on b gets the asset; the taken-over holder asks
    again behind it. No line of an attempt follows the start of the next (``mark``)."""
    cluster.workflows = WORKFLOWS
    cluster.start("a", "b", lease=3.0)
    out, never, go = cluster.base / "locked.txt", cluster.base / "never", cluster.base / "go"
    go.touch()
    holder = cluster.submit("a", "mark", "-p", f"out={out}", "-p", f"path={never}", "--asset", "x")
    e2e.wait_until(lambda: [n for n, _ in runs(out)] == ["a"], what="the holder's step on a")
    waiter = cluster.submit("b", "mark", "-p", f"out={out}", "-p", f"path={go}", "--asset", "x")
    _state(cluster, "b", waiter, "waiting-for-lock")
    cluster.kill("a")
    _state(cluster, "b", waiter, "completed")
    never.touch()
    _state(cluster, "b", holder, "completed")
    assert [n for n, _ in runs(out)] == ["a", "b", "b"]
    assert overlapping(out) == [], out.read_text()
    assert cluster.sql("SELECT count(*) FROM lock_requests") == [(0,)]
