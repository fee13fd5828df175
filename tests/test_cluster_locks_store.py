"""Asset locks in PostgreSQL across nodes (SPEC §3.4, §10), at the store: two real stores
on one real database are two nodes; each asks, releases and listens as a daemon would.

The rules are the in-memory LockManager's: a random sequence of requests and releases
spread over both nodes grants exactly what the LockManager grants for it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import anyio
import psycopg
import pytest

from jobd.engine.locks import LockManager
from jobd.store.contract import AssetLocks, LockEvent
from jobd.store.postgres import PostgresStore
from jobd.store.postgres import open_store as open_postgres

DEADLINE = 30.0


class Node:
    """One node: its store, its view of the locks, and what the database told it."""

    def __init__(self, store: PostgresStore, name: str) -> None:
        self.store = store
        self.locks: AssetLocks = store.asset_locks(name)
        self.events: list[LockEvent] = []
        self.resyncs = 0
        self._changed = anyio.Event()

    def report(self, event: LockEvent) -> None:
        if event[0] == "resync":
            self.resyncs += 1
            self._changed.set()
        elif event[0] != "poll":
            self.events.append(event)
            self._changed.set()

    async def ask(self, job: int, exclusive: tuple[str, ...], shared: tuple[str, ...] = ()) -> None:
        unit = self.store.changes()
        await self.store.commit(self.locks.request(unit, job, exclusive, shared, 1000.0 + job))

    async def drop(self, job: int) -> None:
        await self.store.commit(self.locks.release(self.store.changes(), job))

    async def wait_for(self, predicate: Callable[[list[LockEvent]], bool]) -> None:
        with anyio.fail_after(DEADLINE):
            while not predicate(self.events):
                self._changed = anyio.Event()
                await self._changed.wait()

    async def wait_resyncs(self, n: int) -> None:
        with anyio.fail_after(DEADLINE):
            while self.resyncs < n:
                self._changed = anyio.Event()
                await self._changed.wait()

    def granted(self) -> list[int]:
        return [job for kind, job in self.events if kind == "granted"]


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Node, Node]]:
    async with AsyncExitStack() as stack:
        a = Node(await stack.enter_async_context(open_postgres(pg_url, single=False)), "a")
        b = Node(await stack.enter_async_context(open_postgres(pg_url, single=False)), "b")
        tg = await stack.enter_async_context(anyio.create_task_group())
        for node in (a, b):
            await tg.start(node.locks.listen, node.report, 3600.0)  # listening before any ask
        yield a, b
        tg.cancel_scope.cancel()


async def _held(node: Node) -> dict[int, bool]:
    return await node.locks.mine()


async def test_waiters_across_nodes_are_served_in_arrival_order(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.ask(1, ("x",))
    await b.ask(2, ("x",))
    await a.ask(3, ("x",))
    await b.ask(4, ("x",))
    await a.wait_for(lambda ev: ("granted", 1) in ev)
    assert await _held(a) == {1: True, 3: False}
    assert await _held(b) == {2: False, 4: False}
    snap = await a.locks.snapshot()
    assert [h["job_id"] for h in snap[0]["holders"]] == [1]
    assert [(w["job_id"], w["node"]) for w in snap[0]["waiters"]] == [(2, "b"), (3, "a"), (4, "b")]
    await a.drop(1)  # a release on node a wakes the next waiter on node b, without a poll
    await b.wait_for(lambda ev: ("granted", 2) in ev)
    await b.drop(2)
    await a.wait_for(lambda ev: ("granted", 3) in ev)
    await a.drop(3)
    await b.wait_for(lambda ev: ("granted", 4) in ev)
    assert a.granted() == [1, 3] and b.granted() == [2, 4]
    await b.drop(4)
    assert await a.locks.snapshot() == []


async def test_shared_holders_together_and_behind_an_earlier_exclusive(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.ask(1, (), ("x",))
    await b.ask(2, (), ("x",))
    await a.ask(3, ("x",))
    await b.ask(4, (), ("x",))  # shared, but behind the exclusive 3
    await a.wait_for(lambda ev: ("granted", 1) in ev)
    await b.wait_for(lambda ev: ("granted", 2) in ev)
    assert await _held(b) == {2: True, 4: False}
    await a.drop(1)
    await b.drop(2)
    await a.wait_for(lambda ev: ("granted", 3) in ev)
    assert await _held(b) == {4: False}
    await a.drop(3)
    await b.wait_for(lambda ev: ("granted", 4) in ev)


async def test_all_or_nothing_and_no_overtaking(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.ask(1, ("x",))
    await b.ask(2, ("x", "y"))  # waits for x, holds nothing (not y either)
    await a.ask(3, ("y",))  # y is free, but 2 asked for it first: 3 waits behind it
    await a.wait_for(lambda ev: ("granted", 1) in ev)
    assert await _held(b) == {2: False}
    assert await _held(a) == {1: True, 3: False}
    await a.drop(1)
    await b.wait_for(lambda ev: ("granted", 2) in ev)
    assert await _held(a) == {3: False}
    await b.drop(2)
    await a.wait_for(lambda ev: ("granted", 3) in ev)


async def test_a_withdrawn_waiter_lets_the_next_one_through(nodes: tuple[Node, Node]) -> None:
    """A lock timeout (or a cancel) drops a waiting request: those behind it move up."""
    a, b = nodes
    await a.ask(1, ("x",), ("y",))
    await b.ask(2, ("y",))  # waits for 1's shared hold on y
    await b.ask(3, (), ("y",))  # shared, but behind the exclusive 2
    await b.drop(2)
    await b.wait_for(lambda ev: ("granted", 3) in ev)
    assert 2 not in await _held(b)


async def test_a_dead_nodes_locks_go_to_the_next_waiters(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.ask(1, ("x",))
    await a.ask(2, ("y",))
    await b.ask(3, ("x",))
    await a.ask(4, ("y",))  # a's own waiter goes too
    await b.ask(5, ("y",))
    await a.wait_for(lambda ev: ("granted", 2) in ev)
    assert await b.locks.release_node_locks("a") == [1, 2, 4]
    await b.wait_for(lambda ev: ("granted", 3) in ev and ("granted", 5) in ev)
    assert await _held(a) == {}
    assert await _held(b) == {3: True, 5: True}


async def test_asking_again_keeps_the_place_and_repeats_a_grant(nodes: tuple[Node, Node]) -> None:
    """A restarted node asks again for what it held or waited for."""
    a, b = nodes
    await a.ask(1, ("x",))
    await b.ask(2, ("x",))
    await a.ask(3, ("x",))
    await a.wait_for(lambda ev: ev.count(("granted", 1)) == 1)
    await a.ask(1, ("x",))
    await a.wait_for(lambda ev: ev.count(("granted", 1)) == 2)
    await a.ask(3, ("x",))
    snap = await a.locks.snapshot()
    assert [w["job_id"] for w in snap[0]["waiters"]] == [2, 3]


async def test_a_busy_asset_makes_the_waiters_node_recheck(
    nodes: tuple[Node, Node], pg_url: str
) -> None:
    """The grant tries the advisory locks of a waiter's other assets without waiting: when
    another transaction holds one, the waiter's node is told to recheck, and its recheck
    grants it once that transaction is over."""
    a, b = nodes
    await a.ask(1, ("x",))
    await b.ask(2, ("x", "y"))
    async with await psycopg.AsyncConnection.connect(pg_url) as other:
        await other.execute("SELECT pg_advisory_xact_lock(7316100, hashtext('y'))")
        await a.drop(1)
        await b.wait_for(lambda ev: ("recheck", 2) in ev)
        assert await _held(b) == {2: False}
    await b.store.commit(b.locks.regrant(b.store.changes(), 2))
    await b.wait_for(lambda ev: ("granted", 2) in ev)


async def test_random_requests_across_nodes_grant_as_the_lock_manager(
    nodes: tuple[Node, Node],
) -> None:
    rng = random.Random(13)
    model = LockManager()
    assets = ["p", "q", "r", "s"]
    owner: dict[int, Node] = {}
    for job in range(1, 121):
        live = list(owner)
        if live and rng.random() < 0.45:
            victim = rng.choice(live)
            model.release(victim)
            await owner.pop(victim).drop(victim)
        else:
            picked = rng.sample(assets, rng.randint(1, 2))
            shared = tuple(a for a in picked if rng.random() < 0.4)
            exclusive = tuple(a for a in picked if a not in shared)
            model.acquire(job, exclusive, shared)
            owner[job] = node = rng.choice(nodes)
            await node.ask(job, exclusive, shared)
        expected = {job: model.holds(job) for job in owner}
        got = {**await nodes[0].locks.mine(), **await nodes[1].locks.mine()}
        assert got == expected, f"after job {job}"


async def test_a_lost_listening_connection_is_opened_again(
    nodes: tuple[Node, Node], pg_url: str
) -> None:
    """The server ends the LISTEN connections: each node listens again, says so
    (``resync``: its caller checks its requests), and hears the next grant."""
    a, b = nodes
    await a.wait_resyncs(1)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE %s",
            ('LISTEN "jobd_locks_%',),
        ).fetchall()
    assert len(ended) == 2
    await a.wait_resyncs(2)
    await b.wait_resyncs(2)
    await b.ask(1, ("x",))
    await b.wait_for(lambda ev: ("granted", 1) in ev)
