"""The events of other nodes on each node's event stream (SPEC §10), with real daemons.

``jobd watch`` (a pipe: one line per event) against node a follows a job that runs on
node b, and every event of that job arrives once, in the order b made them.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests import e2e
from tests.cluster import CLUSTER_WORKFLOWS, Cluster

STATE_LINE = re.compile(r"(\S+) -> (\S+)")


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def watch_a(cluster: Cluster) -> Iterator[subprocess.Popen[str]]:
    """``jobd watch`` on node a (nodes a and b started), subscribed when yielded."""
    cluster.start("a", "b")
    env = e2e.jobd_env(JOBD_SOCKET=str(cluster.node("a").layout.socket))
    watch = subprocess.Popen(
        [sys.executable, "-m", "jobd", "watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=e2e.ROOT,
        preexec_fn=_sigint_default,  # a background shell leaves SIGINT ignored: undo it
    )
    try:
        assert watch.stderr is not None
        assert "watching events" in watch.stderr.readline()  # subscribed: nothing is missed
        yield watch
    finally:
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=30)


def _lines_until(watch: subprocess.Popen[str], wanted: str) -> list[str]:
    """The watch's lines up to the first containing ``wanted``, read with a deadline."""
    assert watch.stdout is not None
    stdout = watch.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: list[str] = []
    while not any(wanted in line for line in seen):
        try:
            seen.append(lines.get(timeout=60))
        except queue.Empty:
            raise AssertionError(f"no {wanted!r} within 60 s: {seen}") from None
    return seen


def test_watch_on_one_node_sees_a_job_run_on_another(
    cluster: Cluster, watch_a: subprocess.Popen[str]
) -> None:
    job_id = cluster.submit("b", "demo", "-p", "who=elsewhere")
    lines = _lines_until(watch_a, f"job {job_id}: running -> completed")
    tag = f"job {job_id}: "
    mine = [line.split(tag, 1)[1].strip() for line in lines if tag in line]
    watched = [m.group(1, 2) for m in map(STATE_LINE.match, mine) if m and m.group(1) != "new"]
    history = cluster.show("a", job_id)["history"]
    stored = [(h["from"], h["to"]) for h in history if h["from"] is not None]
    assert watched == stored, (mine, stored)  # each once, in order
    assert any("step hello completed" in line for line in mine), mine


TALK = (
    CLUSTER_WORKFLOWS
    + """
[workflows.talk]
steps = [ { name = "talk", action = "exec", params = { argv = [
  "sh", "-c",
  "while [ ! -e {speak} ]; do sleep 0.05; done; echo said-on-$JOBD_TEST_NODE; \
while [ ! -e {end} ]; do sleep 0.05; done",
] } } ]
"""
)


def _wait_for_want(conn: psycopg.Connection[Any], node: str) -> None:
    """Until node ``node`` says on ``jobd_events`` that a reader follows its stream."""
    for notice in conn.notifies(timeout=60):
        if notice.payload == f"want {node}":
            return
    raise AssertionError(f"node {node} never said it wants the other nodes' events")


def test_logs_follow_on_one_node_shows_the_lines_of_a_step_on_another(cluster: Cluster) -> None:
    cluster.workflows = TALK
    cluster.start("a", "b")
    speak, end = cluster.base / "speak", cluster.base / "end"
    job_id = cluster.submit("b", "talk", "-p", f"speak={speak}", "-p", f"end={end}")
    env = e2e.jobd_env(JOBD_SOCKET=str(cluster.node("a").layout.socket))
    with psycopg.connect(cluster.url, autocommit=True) as news:
        news.execute("LISTEN jobd_events")
        follow = subprocess.Popen(
            [sys.executable, "-m", "jobd", "logs", "-f", str(job_id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=e2e.ROOT,
            preexec_fn=_sigint_default,
        )
        try:
            _wait_for_want(news, "a")  # logs -f is reading a's stream now
            speak.touch()
            # The line comes while the step waits for its end: no event of the job carries
            # it; the relayed marker of b's committed line does.
            lines = _lines_until(follow, "said-on-b")
            assert cluster.show("a", job_id)["state"] == "running", lines
            end.touch()
            assert follow.wait(timeout=60) == 0  # -f ends with the job
        finally:
            if follow.poll() is None:
                follow.send_signal(signal.SIGINT)
            follow.communicate(timeout=30)


def test_events_are_packed_in_order_into_payloads_postgresql_takes() -> None:
    from jobd.core.events import JobEvent
    from jobd.core.states import JobState
    from jobd.engine.relay import pack, unpack
    from jobd.store.news import MAX_PAYLOAD

    S = JobState
    events = [
        JobEvent(i, "state", 1.5 + i, S.QUEUED, S.RUNNING, "picked", "scheduler")
        for i in range(1, 2001)
    ]
    events.append(JobEvent(7, "step", 9.0, S.RUNNING, S.RUNNING, "x" * 9000, "a", "s", {"e": "y"}))
    payloads = pack("node-b", events)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    rows = [row for p in payloads for row in json.loads(p.partition("\n")[2])]
    assert all(p.startswith("node-b\n") for p in payloads)
    back = [unpack(row) for row in rows]
    assert back[:-1] == events[:-1]  # every one, in order
    assert back[-1].job_id == 7 and back[-1].data == {"truncated": True}  # too big: ids kept


def test_a_node_publishes_its_events_only_while_another_node_has_readers(
    cluster: Cluster,
) -> None:
    cluster.start("a", "b")
    with psycopg.connect(cluster.url, autocommit=True) as news:
        news.execute("LISTEN jobd_events")
        unwatched = cluster.submit("b", "demo", "-p", "who=nobody")
        e2e.wait_until(
            lambda: cluster.show("b", unwatched)["state"] == "completed", what="completed"
        )
        env = e2e.jobd_env(JOBD_SOCKET=str(cluster.node("a").layout.socket))
        watch = subprocess.Popen(
            [sys.executable, "-m", "jobd", "watch"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=e2e.ROOT,
            preexec_fn=_sigint_default,
        )
        try:
            heard: list[str] = []
            for notice in news.notifies(timeout=60):
                heard.append(notice.payload)
                if notice.payload == "want a":
                    break
            assert heard and heard[-1] == "want a", heard  # a's reader is there now
            # Before a had a reader, b sent no event (only its start-up's question).
            assert not [p for p in heard if p.startswith("b\n")], heard
            watched = cluster.submit("b", "demo", "-p", "who=somebody")
            for notice in news.notifies(timeout=60):
                if notice.payload.startswith("b\n") and f"[{watched}," in notice.payload:
                    break
            else:
                raise AssertionError("b never published the watched job's events")
        finally:
            watch.send_signal(signal.SIGINT)
            watch.communicate(timeout=30)
