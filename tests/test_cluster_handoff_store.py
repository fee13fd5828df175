"""The one-commit lock hand-off in PostgreSQL (``sql/migrate-13.sql``), at the store: two
real stores on one real database are nodes ``a`` and ``b``, with real job rows.

A request that carries its job's start is started by the transaction that grants it,
whichever node's that is: the job ``running``, its history row, its step's attempt, and
``started`` told to the waiter's node, in that one commit. A start the node has not taken
up can be withdrawn (or put back, keeping the grant), leaving the rows as they were.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import psycopg
import pytest

from jobd.core.models import Job, JobSpec, Step
from jobd.core.states import JobState as S
from jobd.store.contract import AssetLocks, LockEvent, LockStart
from jobd.store.postgres import PostgresStore
from jobd.store.postgres import open_store as open_postgres
from jobd.store.postgres.bulk import split
from jobd.store.postgres.units import PgUnit

DEADLINE = 30.0


class Node:
    """One node: its store (its writer names it), its locks, what it was told."""

    def __init__(self, store: PostgresStore, name: str) -> None:
        self.store = store
        self.locks: AssetLocks = store.asset_locks(name)
        self.events: list[LockEvent] = []
        self._changed = anyio.Event()

    def report(self, event: LockEvent) -> None:
        if event[0] not in ("poll", "resync"):
            self.events.append(event)
            self._changed.set()

    async def submit(self, job_id: int) -> None:
        """Job ``job_id`` with one step, stored ``queued`` by this node (so it is its)."""
        spec = JobSpec(workflow="wf", assets=("x",))
        job = Job(id=job_id, spec=spec, state=S.QUEUED, created_at=1.0, updated_at=1.0)
        unit = self.store.changes().insert_job(job)
        unit.insert_step(Step(job_id=job_id, idx=0, name="s", action="noop", params={}))
        await self.store.commit(unit)

    async def wait(self, job_id: int) -> None:
        """Move the job to ``waiting-for-lock`` with its request, which carries its start."""
        unit = self.store.changes().transition(
            job_id, S.QUEUED, S.WAITING_FOR_LOCK, 2.0, "waiting", "test"
        )
        await self.store.commit(self.locks.request(unit, job_id, ("x",), (), 2.0, START))

    async def commit(self, make: Callable[[Any, int], Any], job_id: int) -> None:
        await self.store.commit(make(self.store.changes(), job_id))

    async def wait_for(self, predicate: Callable[[list[LockEvent]], bool]) -> None:
        with anyio.fail_after(DEADLINE):
            while not predicate(self.events):
                self._changed = anyio.Event()
                await self._changed.wait()

    async def told(self, job_id: int) -> LockEvent:
        """The first thing this node was told about ``job_id``."""
        await self.wait_for(lambda events: any(e[1] == job_id for e in events))
        return next(e for e in self.events if e[1] == job_id)


START = LockStart(0, 1)


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Node, Node]]:
    async with AsyncExitStack() as stack:
        a = Node(await stack.enter_async_context(open_postgres(pg_url, node="a")), "a")
        b = Node(await stack.enter_async_context(open_postgres(pg_url, node="b")), "b")
        tg = await stack.enter_async_context(anyio.create_task_group())
        for node in (a, b):
            await tg.start(node.locks.listen, node.report, 3600.0)
        yield a, b
        tg.cancel_scope.cancel()


def _rows(url: str, job_id: int) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        job = conn.execute("SELECT state, node, xmin::text FROM jobs WHERE id = %s", (job_id,))
        step = conn.execute(
            "SELECT state, attempts, started_at FROM steps WHERE job_id = %s", (job_id,)
        )
        history = conn.execute(
            "SELECT to_state, cause, actor, xmin::text FROM history WHERE job_id = %s ORDER BY id",
            (job_id,),
        )
        request = conn.execute(
            "SELECT granted_at IS NOT NULL, started_at, xmin::text FROM lock_requests"
            " WHERE job_id = %s",
            (job_id,),
        )
        return {
            "job": job.fetchone(),
            "step": step.fetchone(),
            "history": history.fetchall(),
            "request": request.fetchone(),
        }


async def test_a_release_on_one_node_starts_the_waiter_of_another_in_its_commit(
    nodes: tuple[Node, Node], pg_url: str
) -> None:
    a, b = nodes
    await a.submit(1)
    await b.submit(2)
    await a.wait(1)  # x is free: granted and started by the request's own transaction
    kind, _, start = await a.told(1)  # type: ignore[misc]
    assert kind == "started" and (start.step, start.attempts) == (0, 1)
    await b.wait(2)
    assert _rows(pg_url, 2)["job"][0] == "waiting-for-lock"
    await a.commit(a.locks.release, 1)  # node a's release: b's job starts in that commit
    kind, _, start = await b.told(2)  # type: ignore[misc]
    assert kind == "started"
    rows = _rows(pg_url, 2)
    state, holder, job_xmin = rows["job"]
    assert (state, holder) == ("running", "b")  # started by a, still b's job
    assert rows["step"] == ("running", 1, start.at)
    assert rows["history"][-1][:3] == ("running", "lock granted", "scheduler")
    granted, started_at, request_xmin = rows["request"]
    assert granted and started_at == start.at
    assert job_xmin == request_xmin == rows["history"][-1][3]  # one transaction
    assert await b.locks.starts() == {2: start}
    assert await b.locks.mine() == {2: True}


async def test_a_withdrawn_start_leaves_the_job_as_it_was(
    nodes: tuple[Node, Node], pg_url: str
) -> None:
    """Canceled before its node took the start up: the withdraw puts the start back and
    lets the asset go; the job's transition from waiting-for-lock then holds."""
    a, b = nodes
    await a.submit(1)
    await b.submit(2)
    await b.submit(3)
    await a.wait(1)
    await b.wait(2)
    await b.wait(3)
    before = _rows(pg_url, 2)
    await a.commit(a.locks.release, 1)
    await b.told(2)
    assert _rows(pg_url, 2)["job"][0] == "running"
    await b.commit(b.locks.withdraw, 2)
    after = _rows(pg_url, 2)
    assert after["job"][:2] == before["job"][:2] == ("waiting-for-lock", "b")
    assert after["step"] == before["step"] == ("queued", 0, None)
    assert [h[:3] for h in after["history"]] == [h[:3] for h in before["history"]]
    assert after["request"] is None
    kind, _, _ = await b.told(3)  # type: ignore[misc]
    assert kind == "started"  # the withdraw passed x on
    canceled = b.store.changes().transition(2, S.WAITING_FOR_LOCK, S.CANCELED, 3.0, "c", "t")
    await b.store.commit(canceled)


async def test_an_unstarted_grant_keeps_its_hold(nodes: tuple[Node, Node], pg_url: str) -> None:
    """A node that stops before running a start puts it back and keeps the grant."""
    a, _ = nodes
    await a.submit(1)
    await a.wait(1)
    await a.told(1)
    await a.commit(a.locks.unstart, 1)
    rows = _rows(pg_url, 1)
    assert rows["job"][0] == "waiting-for-lock" and rows["step"] == ("queued", 0, None)
    assert await a.locks.mine() == {1: True}
    assert await a.locks.starts() == {}
    await a.commit(lambda unit, j: a.locks.request(unit, j, ("x",), (), 2.0, START), 1)
    assert await a.locks.mine() == {1: True}  # asked again: its hold is told again
    await a.wait_for(lambda events: ("granted", 1) in events)


#: A queued job's ``insert_job`` statement (``codec.job_row``'s columns after the op).
def _insert_job(job: int) -> list[Any]:
    return ["insert_job", job, None, "wf", "queued", "{}", 0, None, None, 1.0, None, None, 1.0, 1.0]


def _unit(*statements: list[Any], locking: bool = False) -> PgUnit:
    unit = PgUnit()
    unit.statements = [list(s) for s in statements]
    if locking:
        unit.locking = ([], [], [])
    return unit


def test_what_may_go_ahead_of_a_batchs_lock_statements() -> None:
    """Submissions and outcomes go ahead (grouped); lock statements, and a job's units
    after a lock statement that puts its start back, follow in order."""
    insert = _unit(_insert_job(1), ["history", 1])
    waits = _unit(["transition", "w", 0, 0, 0, 0, 0, 1, "q"], ["lock_request", 1], locking=True)
    done = _unit(["transition", "c", 0, 0, 0, 0, 0, 2, "r"], ["record_step", *[0] * 7, 2, 0])
    release = _unit(["lock_release", 2, "a"], locking=True)
    withdraw = _unit(["lock_withdraw", 3, "a"], locking=True)
    cancel = _unit(["transition", "x", 0, 0, 0, 0, 0, 3, "w"], ["history", 3])
    assert split([insert, waits, done, release, withdraw, cancel]) == ([0, 2], [1, 3, 4, 5])
    assert split([waits, release]) is None  # nothing goes ahead
    log = _unit(["log", 2, 0.0, None, "info", "x"])
    assert split([log, release]) is None  # ahead, but not of the grouped kinds


async def test_a_split_batch_answers_for_each_unit(nodes: tuple[Node, Node], pg_url: str) -> None:
    """One batch: a new job, another's outcome whose guard fails, a release, a request."""
    a, _ = nodes
    await a.submit(1)
    await a.wait(1)
    await a.told(1)
    await a.submit(2)
    before = a.store.bulk_batches
    store = a.store
    late = PgUnit().transition(2, S.RUNNING, S.COMPLETED, 3.0, "wrong state", "t")
    two = store.changes().transition(2, S.QUEUED, S.WAITING_FOR_LOCK, 3.0, "waiting", "t")
    units = [
        a.locks.release(store.changes(), 1),
        late,
        PgUnit().transition(1, S.RUNNING, S.COMPLETED, 3.0, "done", "t"),
        a.locks.request(two, 2, ("x",), (), 3.0, START),
    ]
    results = await asyncio.gather(*(store.commit(u) for u in units), return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "GuardFailed",
        "NoneType",
        "NoneType",
    ]
    assert a.store.bulk_batches > before
    kind, _, _ = await a.told(2)  # type: ignore[misc]
    assert kind == "started"
    assert _rows(pg_url, 1)["job"][0] == "completed"
    assert _rows(pg_url, 2)["job"][0] == "running"


def test_a_request_units_move_goes_ahead_and_its_request_depends_on_it() -> None:
    """A move to waiting-for-lock with its request is parted: the move (and its history)
    goes ahead, set-based; the request follows, skipped if the move's guard fails. Not for
    a job an earlier lock statement of the batch names."""
    from jobd.store.postgres import queries as q
    from jobd.store.postgres.bulk import divide, plan

    def waits(job: int) -> PgUnit:
        unit = PgUnit().transition(job, S.QUEUED, S.WAITING_FOR_LOCK, 1.0, "w", "t")
        return unit.lock_request(job, "a", ("x",), (), 1.0, START)

    insert = _unit(_insert_job(1), ["history", 1])
    release = _unit(["lock_release", 3, "a"], locking=True)
    units = [insert, waits(1), release, waits(3), waits(2)]
    parted = divide(units)
    assert parted is not None
    pieces, origin, deps = parted
    assert origin == [0, 1, 1, 2, 3, 4, 4]  # 1 and 2 parted; 3 follows its job's release
    assert deps == [-1, -1, 1, -1, -1, -1, 5]
    assert [s[0] for s in pieces[1].statements] == ["transition", "history"]
    assert [s[0] for s in pieces[2].statements] == ["lock_request"]
    statement, params, order = plan(units, json.dumps)
    assert statement == q.APPLY_SPLIT_DEPS
    assert params[1] == 3 and params[3] == [1, -1, -1, 2]  # ahead: insert, 1's and 2's moves
    assert order == [0, 1, 4, 1, 2, 3, 4]
    assert divide([release, insert]) is None


async def test_a_parted_request_is_skipped_with_its_failed_move(
    nodes: tuple[Node, Node], pg_url: str
) -> None:
    """One batch: a move whose guard fails (its request is not made), and one that holds
    (granted and started at once: its history in order)."""
    a, _ = nodes
    await a.submit(1)
    await a.submit(2)
    store = a.store
    stale = store.changes().transition(1, S.RUNNING, S.WAITING_FOR_LOCK, 3.0, "stale", "t")
    fine = store.changes().transition(2, S.QUEUED, S.WAITING_FOR_LOCK, 3.0, "waiting", "t")
    units = [
        a.locks.request(stale, 1, ("x",), (), 3.0, START),
        a.locks.request(fine, 2, ("x",), (), 3.0, START),
    ]
    results = await asyncio.gather(*(store.commit(u) for u in units), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["GuardFailed", "NoneType"]
    one, two = _rows(pg_url, 1), _rows(pg_url, 2)
    assert one["job"][0] == "queued" and one["request"] is None and one["history"] == []
    assert two["job"][0] == "running"
    assert [h[:2] for h in two["history"]] == [
        ("waiting-for-lock", "waiting"),
        ("running", "lock granted"),
    ]
    kind, _, _ = await a.told(2)  # type: ignore[misc]
    assert kind == "started"
