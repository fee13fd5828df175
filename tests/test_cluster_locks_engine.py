"""Asset locks across two real engines (two nodes) on one real PostgreSQL database.

Each engine runs in this process on a store of its own, as a daemon would; the steps
append ``start``/``end`` lines with the job id and a monotonic time to one file, so the
order in which jobs held an asset, and that no two held an exclusive one at once, are
read from what the steps did. The fallback poll is set to an hour: every wake-up here
comes by NOTIFY.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from jobd.config import Config
from jobd.core.models import Job, Step
from jobd.core.states import JobState
from jobd.engine import Engine, cluster_handoff
from jobd.plugin.host import PluginHost
from jobd.store.assetlocks import LockStart
from jobd.store.postgres import open_store as open_postgres
from jobd.store.postgres.units import PgUnit
from tests.enginekit import (
    make_config,
    spec,
    step,
    wait_all,
    wait_state,
    wait_until,
    workflow,
)
from tests.pgschema import apply
from tests.pgschema import node as node_session

S = JobState


@asynccontextmanager
async def node_engine(
    config: Config, url: str, node: str, *, member: bool = False
) -> AsyncIterator[Engine]:
    """Node ``node``'s engine on ``url``; ``member``: its store a member of the cluster by
    that name too (its lease renewed, lost nodes taken over by it), as a daemon's is."""
    plugins = PluginHost(config.daemon.plugin_dirs)
    plugins.load()
    opened = open_postgres(url, node=node) if member else open_postgres(url, single=False)
    async with opened as store:
        engine = Engine(config, store, plugins, node=node)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    record = step("r", "t-record", params={"log": "{log}", "gate": "{gate}"})
    hold = step("r", "t-record", params={"log": "{log}", "hold": "{hold}"})
    flows = [workflow("record", record), workflow("hold", hold)]
    return make_config(tmp_path, flows, workers=4)


@pytest.fixture
async def two(
    config: Config, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Engine, Engine]]:
    monkeypatch.setattr(cluster_handoff, "POLL", 3600.0)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node_engine(config, pg_url, "a"))
        b = await stack.enter_async_context(node_engine(config, pg_url, "b"))
        yield a, b


def _job(tmp: Path, gate: str = "gate", **kw: Any) -> Any:
    return spec("record", params={"log": str(tmp / "log"), "gate": str(tmp / gate)}, **kw)


def _spans(tmp: Path) -> list[tuple[int, float, float]]:
    """``(job, start, end)`` of every step run, by start."""
    starts: dict[int, float] = {}
    spans = []
    for line in (tmp / "log").read_text().splitlines():
        rec = json.loads(line)
        if rec["ev"] == "start":
            starts[rec["job"]] = rec["t"]
        else:
            spans.append((rec["job"], starts.pop(rec["job"]), rec["t"]))
    assert not starts, "a step started and never ended"
    return sorted(spans, key=lambda s: s[1])


def _never_together(spans: list[tuple[int, float, float]]) -> None:
    for (j1, _, end), (j2, start, _) in itertools.pairwise(spans):
        assert start >= end, f"jobs {j1} and {j2} held the exclusive asset together"


async def test_waiters_on_two_nodes_run_in_the_order_they_queued(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    a, b = two
    holder = await a.submit(_job(tmp_path, assets=["x"]))
    await wait_state(a, holder.id, S.RUNNING)
    waiters = []
    for engine in (b, a, b, a, b):
        job = await engine.submit(_job(tmp_path, "open", assets=["x"]))
        await wait_state(engine, job.id, S.WAITING_FOR_LOCK)
        waiters.append((engine, job.id))
    items = await a.locks_info()
    assert [(w["job_id"], w["node"], w["position"]) for w in items[0]["waiters"]] == [
        (job_id, "a" if engine is a else "b", i) for i, (engine, job_id) in enumerate(waiters, 1)
    ]
    assert items[0]["holders"][0]["job_id"] == holder.id and "age" in items[0]["holders"][0]
    (tmp_path / "open").write_text("")
    (tmp_path / "gate").write_text("")
    for engine, job_id in waiters:
        await wait_state(engine, job_id, S.COMPLETED, timeout=60)
    spans = _spans(tmp_path)
    assert [s[0] for s in spans] == [holder.id, *(job_id for _, job_id in waiters)]
    _never_together(spans)
    assert await b.locks_info() == []


async def test_the_holders_release_starts_the_waiter_on_another_node_in_its_commit(
    two: tuple[Engine, Engine], tmp_path: Path, pg_url: str
) -> None:
    """One durable commit per hand-off: node a's release grants x to node b's waiter and
    writes that job's ``running`` in the same transaction; b runs the step on the NOTIFY."""
    a, b = two
    holder = await a.submit(_job(tmp_path, assets=["x"]))
    await wait_state(a, holder.id, S.RUNNING)
    waiter = await b.submit(_job(tmp_path, "open", assets=["x"]))
    await wait_state(b, waiter.id, S.WAITING_FOR_LOCK)
    (tmp_path / "gate").write_text("")
    job = await wait_state(b, waiter.id, S.RUNNING)
    assert job.steps[0].attempts == 1 and job.steps[0].state == "running"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        grant = conn.execute(
            "SELECT xmin::text FROM lock_requests WHERE job_id = %s", (waiter.id,)
        ).fetchone()
        start = conn.execute(
            "SELECT xmin::text, cause FROM history WHERE job_id = %s AND to_state = 'running'",
            (waiter.id,),
        ).fetchall()
    assert grant is not None and start == [(grant[0], "lock granted")]
    (tmp_path / "open").write_text("")
    done = await wait_all(b, [waiter.id])
    assert done[0].state == S.COMPLETED and done[0].steps[0].attempts == 1


async def test_a_waiter_canceled_before_its_node_ran_its_start_never_ran(
    two: tuple[Engine, Engine], tmp_path: Path, pg_url: str
) -> None:
    """Node a's release starts node b's waiter in the database while every worker of b is
    busy; b cancels it before a worker took it up: the start is put back (no ``running``
    in its history, no attempt), the cancel holds, and x goes to the next waiter."""
    a, b = two
    holder = await a.submit(_job(tmp_path, assets=["x"]))
    await wait_state(a, holder.id, S.RUNNING)
    gone = await b.submit(_job(tmp_path, "open", assets=["x"]))
    await wait_state(b, gone.id, S.WAITING_FOR_LOCK)
    nxt = await a.submit(_job(tmp_path, "open", assets=["x"]))
    await wait_state(a, nxt.id, S.WAITING_FOR_LOCK)
    busy = [await b.submit(_job(tmp_path, "busy")) for _ in range(4)]  # b's 4 workers
    for job_id in (j.id for j in busy):
        await wait_state(b, job_id, S.RUNNING)
    (tmp_path / "gate").write_text("")

    def state_in_db() -> str:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = %s", (gone.id,)).fetchone()
        return str(row[0]) if row else ""

    await wait_until(lambda: state_in_db() == "running")  # started by a's release
    canceled = await b.operate(gone.id, "cancel")
    assert canceled is not None and canceled.state == S.CANCELED
    job = await b.get_job(gone.id)
    assert [h.to_state for h in job.history][-3:] == [S.QUEUED, S.WAITING_FOR_LOCK, S.CANCELED]
    assert job.steps[0].attempts == 0
    (tmp_path / "open").write_text("")
    (tmp_path / "busy").write_text("")
    await wait_all(a, [holder.id, nxt.id])
    await wait_all(b, [j.id for j in busy])
    assert [s[0] for s in _spans(tmp_path) if s[0] not in {j.id for j in busy}] == [
        holder.id,
        nxt.id,
    ]
    assert await a.locks_info() == []


async def test_shared_holders_on_two_nodes_run_together(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    a, b = two
    r1 = await a.submit(_job(tmp_path, shared_assets=["x"]))
    r2 = await b.submit(_job(tmp_path, shared_assets=["x"]))
    await wait_state(a, r1.id, S.RUNNING)
    await wait_state(b, r2.id, S.RUNNING)  # both hold x: neither waits for the other
    writer = await a.submit(_job(tmp_path, "open", assets=["x"]))
    await wait_state(a, writer.id, S.WAITING_FOR_LOCK)
    late_reader = await b.submit(_job(tmp_path, "open", shared_assets=["x"]))
    await wait_state(b, late_reader.id, S.WAITING_FOR_LOCK)  # behind the writer
    (tmp_path / "open").write_text("")
    (tmp_path / "gate").write_text("")
    await wait_all(a, [r1.id, writer.id])
    await wait_all(b, [r2.id, late_reader.id])
    order = [s[0] for s in _spans(tmp_path)]
    assert order.index(writer.id) > max(order.index(r1.id), order.index(r2.id))
    assert order[-1] == late_reader.id


async def test_all_or_nothing_across_nodes(two: tuple[Engine, Engine], tmp_path: Path) -> None:
    a, b = two
    holder = await a.submit(_job(tmp_path, assets=["x"]))
    await wait_state(a, holder.id, S.RUNNING)
    both = await b.submit(_job(tmp_path, "open", assets=["x", "y"]))
    await wait_state(b, both.id, S.WAITING_FOR_LOCK)
    only_y = await a.submit(_job(tmp_path, "open", assets=["y"]))
    # y is free, but the job that wants x and y asked first and holds nothing meanwhile
    await wait_state(a, only_y.id, S.WAITING_FOR_LOCK)
    (tmp_path / "open").write_text("")
    (tmp_path / "gate").write_text("")
    await wait_all(a, [holder.id, only_y.id])
    await wait_all(b, [both.id])
    assert [s[0] for s in _spans(tmp_path)] == [holder.id, both.id, only_y.id]


async def test_lock_timeout_on_one_node_lets_the_next_waiter_through(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    a, b = two
    holder = await a.submit(_job(tmp_path, assets=["x"]))
    await wait_state(a, holder.id, S.RUNNING)
    impatient = await b.submit(_job(tmp_path, "open", assets=["x"], lock_timeout=0.3))
    patient = await a.submit(_job(tmp_path, "open", assets=["x"]))
    failed = await wait_state(b, impatient.id, S.FAILED)
    assert failed.error is not None and failed.error.code == "lock-timeout"
    items = await a.locks_info()
    assert [w["job_id"] for w in items[0]["waiters"]] == [patient.id]
    (tmp_path / "open").write_text("")
    (tmp_path / "gate").write_text("")
    await wait_all(a, [holder.id, patient.id])
    assert [s[0] for s in _spans(tmp_path)] == [holder.id, patient.id]
    assert await a.locks_info() == []


async def test_a_cancelled_waiter_leaves_the_queue_of_every_node(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    a, b = two
    holder = await a.submit(_job(tmp_path, assets=["x"]))
    await wait_state(a, holder.id, S.RUNNING)
    gone = await b.submit(_job(tmp_path, "open", assets=["x"]))
    await wait_state(b, gone.id, S.WAITING_FOR_LOCK)
    await b.operate(gone.id, "cancel")
    await wait_state(b, gone.id, S.CANCELED)
    nxt = await b.submit(_job(tmp_path, "open", assets=["x"]))
    await wait_state(b, nxt.id, S.WAITING_FOR_LOCK)
    items = await a.locks_info()
    assert [w["job_id"] for w in items[0]["waiters"]] == [nxt.id]
    (tmp_path / "open").write_text("")
    (tmp_path / "gate").write_text("")
    await wait_all(b, [nxt.id])
    assert [s[0] for s in _spans(tmp_path)] == [holder.id, nxt.id]


async def test_random_jobs_on_two_nodes_never_hold_conflicting_locks_together(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    """60 jobs of 20 ms, each wanting 1-3 of 4 assets, some shared, submitted at once to both nodes:
    all complete, no two whose steps overlapped in time held a common asset unless both
    held it shared, and no lock is left."""
    rng = random.Random(7)
    wants: dict[int, tuple[set[str], set[str]]] = {}
    engines: dict[int, Engine] = {}

    async def submit(engine: Engine, exclusive: list[str], shared: list[str]) -> None:
        params = {"log": str(tmp_path / "log"), "hold": "0.02"}
        job = await engine.submit(
            spec("hold", params=params, assets=exclusive, shared_assets=shared)
        )
        wants[job.id] = (set(exclusive), set(shared))
        engines[job.id] = engine

    async with anyio.create_task_group() as tg:
        for i in range(60):
            picked = rng.sample(["p", "q", "r", "s"], rng.randint(1, 3))
            shared = [a for a in picked if rng.random() < 0.4]
            tg.start_soon(submit, two[i % 2], [a for a in picked if a not in shared], shared)
    for job_id, engine in engines.items():
        await wait_state(engine, job_id, S.COMPLETED, timeout=120)
    spans = _spans(tmp_path)
    assert sorted(s[0] for s in spans) == sorted(wants)
    for (j1, s1, e1), (j2, s2, e2) in itertools.combinations(spans, 2):
        if s2 < e1 and s1 < e2:  # their steps ran at the same time
            x1, sh1 = wants[j1]
            x2, sh2 = wants[j2]
            assert not (x1 & (x2 | sh2)) and not (x2 & (x1 | sh1)), (j1, j2, wants[j1], wants[j2])
    assert await two[0].locks_info() == []


async def test_waiters_ask_for_their_assets_without_a_worker_waiting_on_each_write(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers, one of them held by x's holder: the 30 jobs queued behind it move to
    ``waiting-for-lock`` through the one free worker without it waiting for each job's
    write, so their requests share transactions (before, one commit each: 30 transactions
    for 30 requests); then they run in the order they queued, and nothing stays held."""
    monkeypatch.setattr(cluster_handoff, "POLL", 3600.0)
    record = step("r", "t-record", params={"log": "{log}", "gate": "{gate}"})
    config = make_config(tmp_path, [workflow("record", record)], workers=2)
    async with node_engine(config, pg_url, "a") as a:
        holder = await a.submit(_job(tmp_path, assets=["x"]))
        await wait_state(a, holder.id, S.RUNNING)
        waiters = await a.submit_many([_job(tmp_path, assets=["x"]) for _ in range(30)])
        for job in waiters:
            await wait_state(a, job.id, S.WAITING_FOR_LOCK)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT xmin::text) FROM history"
                " WHERE to_state = 'waiting-for-lock' AND job_id = ANY(%s)",
                ([job.id for job in waiters],),
            ).fetchone()
        assert row is not None and row[0] == 30
        assert row[1] < 30 // 2, f"30 requests took {row[1]} transactions"
        (tmp_path / "gate").write_text("")
        await wait_all(a, [holder.id, *(job.id for job in waiters)])
        assert [s[0] for s in _spans(tmp_path)] == [holder.id, *(job.id for job in waiters)]
        assert await a.locks_info() == []


def _lost_nodes_jobs(pg_url: str, tmp: Path, holder: int, waiter: int) -> None:
    """Node c (a lost node, its lease long run out) as the database has it: ``holder``
    running with x, ``waiter`` waiting for x behind it with its start in its request; each
    one step that may be retried once."""
    with node_session(pg_url, "c") as c:
        c.execute("SELECT jobd_node_join('c', '{}', 4, 100, 1e9, NULL, 0, NULL)")
        for job_id, state in ((holder, S.RUNNING), (waiter, S.WAITING_FOR_LOCK)):
            spec = _job(tmp, "open", assets=["x"])
            job = Job(id=job_id, spec=spec, state=S.QUEUED, created_at=1.0, updated_at=1.0)
            params = {"log": str(tmp / "log"), "gate": str(tmp / "open")}
            step_row = Step(job_id, 0, "r", "t-record", params, retries=1)
            unit = PgUnit().insert_job(job).insert_step(step_row)
            assert apply(c, unit) == []
            assert apply(c, PgUnit().transition(job_id, S.QUEUED, state, 2.0, "x", "t")) == []
            start = LockStart(0, 1) if job_id == waiter else None
            assert apply(c, PgUnit().lock_request(job_id, "c", ("x",), (), 2.0, start)) == []
        c.execute("UPDATE nodes SET renewed_at = 0, lease_s = 1 WHERE name = 'c'")
        c.execute("NOTIFY jobd_nodes, 'lost c'")  # wakes the other node's takeover now


async def test_a_taken_over_waiter_granted_in_the_takeover_runs_as_a_holder(
    config: Config, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a takes over lost node c: c's holder of x loses its hold, so the takeover's own
    release grants x to c's waiter, now a's, and writes its start; then a's recovery
    interrupts that run. The waiter is a's holder from then on: it runs first, with its
    ``running`` written again, and completes; the old holder asks again and follows.
    (Before, a asked for the held lock again, was told the stale start, ran the step
    without its ``running`` and left the job ``waiting-for-lock`` for good.)"""
    monkeypatch.setattr(cluster_handoff, "POLL", 3600.0)
    (tmp_path / "open").write_text("")
    async with node_engine(config, pg_url, "a", member=True) as a:
        _lost_nodes_jobs(pg_url, tmp_path, holder=9001, waiter=9002)
        done = await wait_all(a, [9001, 9002], timeout=30)
        assert [job.state for job in done] == [S.COMPLETED, S.COMPLETED]
        history = [h.cause for h in (await a.get_job(9002)).history]
        assert "interrupted by the loss of node c; resuming" in history
        assert history[-1] == "all steps completed"
        assert [s[0] for s in _spans(tmp_path)] == [9002, 9001]
        assert await a.locks_info() == []
