"""Tests for jobd.engine.locks: FIFO, shared/exclusive, all-or-nothing, withdrawal, no deadlock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jobd.engine.locks import LockManager

Job = tuple[int, set[str], set[str]]

# -- plain scenarios ------------------------------------------------------------


def test_exclusive_waiters_are_granted_in_fifo_order() -> None:
    locks = LockManager()
    assert locks.acquire(1, ["A"])
    for owner in (2, 3, 4, 5):
        assert not locks.acquire(owner, ["A"])
    order = []
    holder = 1
    while True:
        granted = locks.release(holder)
        if not granted:
            break
        assert len(granted) == 1
        holder = granted[0]
        assert locks.holds(holder)
        order.append(holder)
    assert order == [2, 3, 4, 5]
    assert locks.snapshot() == []
    assert locks.holder_count == 0
    assert locks.waiting_count == 0


def test_shared_readers_hold_together_and_exclusive_waits_for_all() -> None:
    locks = LockManager()
    assert locks.acquire(1, [], ["A"])
    assert locks.acquire(2, [], ["A"])
    assert not locks.acquire(3, ["A"])  # a writer waits for every reader
    assert locks.release(1) == []
    assert locks.is_waiting(3)
    assert locks.release(2) == [3]
    assert locks.holds(3)


def test_shared_request_waits_behind_earlier_exclusive_waiter() -> None:
    locks = LockManager()
    assert locks.acquire(1, [], ["A"])
    assert not locks.acquire(2, ["A"])
    # Compatible with the current reader, but the writer came first.
    assert not locks.acquire(3, [], ["A"])
    assert not locks.acquire(4, [], ["A"])
    assert locks.release(1) == [2]
    # Both readers queued behind the writer are granted together.
    assert locks.release(2) == [3, 4]
    assert locks.snapshot() == [
        {
            "asset": "A",
            "holders": [{"job_id": 3, "mode": "shared"}, {"job_id": 4, "mode": "shared"}],
            "waiters": [],
        }
    ]


def test_asset_in_both_sets_counts_as_exclusive() -> None:
    locks = LockManager()
    assert locks.acquire(1, ["A"], ["A"])
    assert not locks.acquire(2, [], ["A"])
    assert locks.snapshot()[0]["holders"] == [{"job_id": 1, "mode": "exclusive"}]


def test_all_or_nothing_and_strict_fifo_across_assets() -> None:
    locks = LockManager()
    assert locks.acquire(1, ["B"])
    # Job 2 needs A and B: B is held, so it holds neither, but it is queued on A.
    assert not locks.acquire(2, ["A", "B"], now=5.0)
    assert not locks.holds(2)
    assert locks.waiting_since(2) == 5.0
    # A is free of holders, yet job 3 must not overtake job 2 on A.
    assert not locks.acquire(3, ["A"])
    # A shared request on A must not overtake the exclusive job 2 either.
    assert not locks.acquire(4, [], ["A"])
    snap = {entry["asset"]: entry for entry in locks.snapshot()}
    assert snap["A"]["holders"] == []
    assert snap["A"]["waiters"] == [
        {"job_id": 2, "mode": "exclusive", "since": 5.0},
        {"job_id": 3, "mode": "exclusive", "since": None},
        {"job_id": 4, "mode": "shared", "since": None},
    ]
    assert locks.release(1) == [2]  # job 2 gets both at once
    assert locks.holds(2)
    assert locks.waiting_since(2) is None
    assert locks.release(2) == [3]
    assert locks.release(3) == [4]


def test_shared_request_may_pass_an_earlier_shared_waiter() -> None:
    """Readers do not conflict, so a blocked reader does not hold back a later one."""
    locks = LockManager()
    assert locks.acquire(1, ["B"])
    assert not locks.acquire(2, [], ["A", "B"])
    assert locks.acquire(3, [], ["A"])
    assert locks.release(1) == [2]


def test_withdrawing_a_waiter_unblocks_the_ones_behind_it() -> None:
    locks = LockManager()
    assert locks.acquire(1, ["B"])
    assert not locks.acquire(2, ["A", "B"])  # front of A's queue, blocked by B
    assert not locks.acquire(3, ["A"])
    assert not locks.acquire(4, [], ["A"])
    # Job 2 gives up (lock timeout or cancel): job 3 is now first on a free asset.
    assert locks.release(2) == [3]
    assert not locks.is_waiting(2) and not locks.holds(2)
    assert locks.holds(1)
    assert locks.release(3) == [4]


def test_withdrawing_an_exclusive_waiter_frees_the_readers_behind_it() -> None:
    locks = LockManager()
    assert locks.acquire(1, [], ["A"])
    assert not locks.acquire(2, ["A"])
    assert not locks.acquire(3, [], ["A"])
    assert not locks.acquire(4, [], ["A"])
    assert locks.release(2) == [3, 4]


def test_request_without_assets_is_granted_and_duplicates_are_refused() -> None:
    locks = LockManager()
    assert locks.acquire(1, [])
    assert locks.holds(1)
    assert locks.holder_count == 1
    with pytest.raises(ValueError, match="job 1"):
        locks.acquire(1, ["A"])
    assert locks.release(1) == []
    assert locks.release(1) == []  # releasing twice is a no-op
    assert locks.release(99) == []
    assert locks.holder_count == 0


def test_waiting_owners_and_clear() -> None:
    locks = LockManager()
    locks.acquire(1, ["A"])
    locks.acquire(2, ["A"])
    locks.acquire(3, ["A", "B"])
    assert locks.waiting_owners() == [2, 3]
    assert (locks.holder_count, locks.waiting_count) == (1, 2)
    locks.clear()
    assert locks.snapshot() == []
    assert (locks.holder_count, locks.waiting_count) == (0, 0)
    assert not locks.holds(1) and not locks.is_waiting(2)
    assert locks.acquire(2, ["A"])


# -- reference model ------------------------------------------------------------


@dataclass
class Req:
    owner: int
    exclusive: frozenset[str]
    shared: frozenset[str]  # without the exclusive ones
    held: bool = False

    def mode(self, asset: str) -> str:
        return "exclusive" if asset in self.exclusive else "shared"

    @property
    def assets(self) -> frozenset[str]:
        return self.exclusive | self.shared


@dataclass
class Model:
    """The specification written the slow, obvious way: requests in arrival order."""

    reqs: list[Req] = field(default_factory=list)

    def get(self, owner: int) -> Req:
        return next(r for r in self.reqs if r.owner == owner)

    def grantable(self, req: Req) -> bool:
        """Free on every asset: compatible with holders, no conflicting earlier waiter."""
        earlier = self.reqs[: self.reqs.index(req)]
        for asset in req.assets:
            holders = [r for r in self.reqs if r.held and asset in r.assets]
            ahead = [r for r in earlier if not r.held and asset in r.assets]
            if asset in req.exclusive:
                if holders or ahead:
                    return False
            elif any(asset in r.exclusive for r in holders + ahead):
                return False
        return True

    def grant(self, owners: list[int]) -> None:
        """Apply grants in the reported order; each must be allowed at its turn."""
        for owner in owners:
            req = self.get(owner)
            assert not req.held
            assert self.grantable(req), f"job {owner} granted out of turn"
            req.held = True


def new_request(model: Model, owner: int, exclusive: set[str], shared: set[str]) -> Req:
    req = Req(owner, frozenset(exclusive), frozenset(shared - exclusive))
    model.reqs.append(req)
    return req


def check_against_model(locks: LockManager, model: Model) -> None:
    """Every invariant that must hold after any call."""
    for req in model.reqs:
        assert locks.holds(req.owner) == req.held
        assert locks.is_waiting(req.owner) == (not req.held)
    # Greedy: nothing that could run is left waiting.
    for req in model.reqs:
        if not req.held:
            assert not model.grantable(req), f"job {req.owner} left waiting"
    # No deadlock: while anything waits, something holds.
    if locks.waiting_count:
        assert locks.holder_count > 0
    assert locks.holder_count == sum(r.held for r in model.reqs)
    assert locks.waiting_count == sum(not r.held for r in model.reqs)
    assert normalised(locks.snapshot()) == expected_snapshot(model)
    check_compatible_holders(locks)


def expected_snapshot(model: Model) -> list[dict[str, object]]:
    assets = sorted({a for r in model.reqs for a in r.assets})
    out: list[dict[str, object]] = []
    for asset in assets:
        users = [r for r in model.reqs if asset in r.assets]
        holders = sorted(
            ({"job_id": r.owner, "mode": r.mode(asset)} for r in users if r.held),
            key=holder_key,
        )
        waiters = [
            {"job_id": r.owner, "mode": r.mode(asset), "since": None} for r in users if not r.held
        ]
        out.append({"asset": asset, "holders": holders, "waiters": waiters})
    return out


def normalised(snapshot: list[dict[str, object]]) -> list[dict[str, object]]:
    """Holders in a canonical order: shared holders are listed in grant order, not by id."""
    return [{**entry, "holders": sorted(entry["holders"], key=holder_key)} for entry in snapshot]  # type: ignore[call-overload]


def holder_key(holder: dict[str, object]) -> tuple[bool, object]:
    return (holder["mode"] != "exclusive", holder["job_id"])


def check_compatible_holders(locks: LockManager) -> None:
    """Never two exclusive holders of an asset, never exclusive beside shared."""
    for entry in locks.snapshot():
        holders = entry["holders"]
        assert isinstance(holders, list)
        modes = [h["mode"] for h in holders]
        if "exclusive" in modes:
            assert modes == ["exclusive"], entry


ASSETS = ["a", "b", "c", "d", "e"]
asset_sets = st.sets(st.sampled_from(ASSETS), max_size=3)


class LockMachine(RuleBasedStateMachine):
    """Random acquire / release-holder / withdraw-waiter sequences against the model."""

    def __init__(self) -> None:
        super().__init__()
        self.locks = LockManager()
        self.model = Model()
        self.next_owner = 1

    @rule(exclusive=asset_sets, shared=asset_sets)
    def acquire(self, exclusive: set[str], shared: set[str]) -> None:
        owner = self.next_owner
        self.next_owner += 1
        req = new_request(self.model, owner, exclusive, shared)
        expected = self.model.grantable(req)
        assert self.locks.acquire(owner, sorted(exclusive), sorted(shared)) == expected
        req.held = expected

    def _release(self, req: Req) -> None:
        self.model.reqs.remove(req)
        self.model.grant(self.locks.release(req.owner))

    @precondition(lambda self: any(r.held for r in self.model.reqs))
    @rule(data=st.data())
    def release_holder(self, data: st.DataObject) -> None:
        self._release(data.draw(st.sampled_from([r for r in self.model.reqs if r.held])))

    @precondition(lambda self: any(not r.held for r in self.model.reqs))
    @rule(data=st.data())
    def withdraw_waiter(self, data: st.DataObject) -> None:
        self._release(data.draw(st.sampled_from([r for r in self.model.reqs if not r.held])))

    @invariant()
    def consistent(self) -> None:
        check_against_model(self.locks, self.model)


TestLockMachine = LockMachine.TestCase
TestLockMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


workloads = st.lists(st.tuples(asset_sets, asset_sets), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(workload=workloads, rnd=st.randoms(use_true_random=False))
def test_random_workload_always_drains(
    workload: list[tuple[set[str], set[str]]], rnd: random.Random
) -> None:
    """Submit everything, then release holders in random order: every job runs once."""
    locks = LockManager()
    model = Model()
    ran: list[int] = []
    for owner, (exclusive, shared) in enumerate(workload, start=1):
        req = new_request(model, owner, exclusive, shared)
        req.held = locks.acquire(owner, exclusive, shared)
        check_against_model(locks, model)
    while model.reqs:
        holders = [r for r in model.reqs if r.held]
        assert holders, "deadlock: requests wait but nobody holds"
        victim = rnd.choice(holders)
        model.reqs.remove(victim)
        ran.append(victim.owner)
        model.grant(locks.release(victim.owner))
        check_against_model(locks, model)
    assert sorted(ran) == list(range(1, len(workload) + 1))
    assert locks.snapshot() == []


# -- engine-like concurrent use -------------------------------------------------------


async def test_workers_run_every_job_without_conflicts() -> None:
    """4 workers, 200 jobs over 3 assets; waiting jobs park on an Event, holding no worker."""
    locks = LockManager()
    rnd = random.Random(7)
    events: dict[int, anyio.Event] = {}
    running: dict[str, list[str]] = {a: [] for a in ("x", "y", "z")}
    finished: list[int] = []
    jobs = []
    for owner in range(1, 201):
        exclusive = set(rnd.sample(["x", "y", "z"], rnd.randint(0, 2)))
        shared = set(rnd.sample(["x", "y", "z"], rnd.randint(0, 2))) - exclusive
        jobs.append((owner, exclusive, shared))

    def grant(owners: list[int]) -> None:
        for owner in owners:
            events.pop(owner).set()

    async def run(owner: int, exclusive: set[str], shared: set[str]) -> None:
        for asset in exclusive:
            assert running[asset] == [], f"job {owner}: {asset} in use by {running[asset]}"
            running[asset].append("exclusive")
        for asset in shared:
            assert "exclusive" not in running[asset]
            running[asset].append("shared")
        for _ in range(rnd.randint(1, 3)):
            await checkpoint()  # a yield point only, letting other tasks interleave
        for asset in exclusive:
            running[asset].remove("exclusive")
        for asset in shared:
            running[asset].remove("shared")
        finished.append(owner)
        grant(locks.release(owner))

    async def wait_then_run(event: anyio.Event, *job: object) -> None:
        await event.wait()
        await run(*job)  # type: ignore[arg-type]

    send, receive = anyio.create_memory_object_stream[Job](10)

    async def worker(tg: TaskGroup, jobs_in: MemoryObjectReceiveStream[Job]) -> None:
        async with jobs_in:
            async for owner, exclusive, shared in jobs_in:
                if locks.acquire(owner, exclusive, shared):
                    await run(owner, exclusive, shared)
                else:
                    event = events[owner] = anyio.Event()
                    tg.start_soon(wait_then_run, event, owner, exclusive, shared)

    # A hang guard only (a deadlock would otherwise block the suite); the run takes ms.
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            async with receive:
                for _ in range(4):
                    tg.start_soon(worker, tg, receive.clone())
            async with send:
                for job in jobs:
                    await send.send(job)

    assert sorted(finished) == list(range(1, 201))
    assert events == {}
    assert locks.snapshot() == []
    assert (locks.holder_count, locks.waiting_count) == (0, 0)
