"""Per-asset lock manager: all-or-nothing acquisition, strict FIFO per asset (SPEC §3.4).

A pure, synchronous, in-memory structure. The engine (one event loop) calls it
and does its own waking: :meth:`LockManager.release` returns the owners that
were granted as a consequence, and the engine notifies them. Locks are never
persisted; :meth:`LockManager.clear` forgets everything at start-up.

Rules
-----
A request (one per owner, an ``int`` job id) names ``exclusive`` and ``shared``
assets; an asset in both is exclusive. It is enqueued on all of its assets at
once, at request time, and is granted all of them at once or none of them.
A waiting request is *grantable* when, on every one of its assets:

* exclusive: the asset has no holder and the request is first in its queue;
* shared: the asset has no exclusive holder and no exclusive request waits
  ahead of it (shared requests are granted together; a shared request waits
  behind an earlier exclusive one).

The manager is greedy: after every call, no waiting request is grantable.

Strict FIFO: a later request never overtakes an earlier *conflicting* waiting
request on a common asset, even when that earlier request is blocked on some
other asset; it stays queued ahead and keeps its place.

Deadlock freedom
----------------
Holders never wait (all-or-nothing), so a holder only runs and releases.
Take the oldest waiting request: on each of its assets no earlier waiter
exists, so it is at the front of every one of its queues and the only thing it
can wait for is the current holders. They finish and release, and (greedy
rule) it is then granted. Induction on age drains every queue: while anything
waits, something holds.

Cost
----
Acquire is O(assets of the request). Release is O(assets of the request) plus
the candidates it examines: on each freed asset, the first waiter when it is
exclusive, or the run of shared waiters before the first exclusive one when
an exclusive hold or exclusive wait was dropped there. Granting a request can
never make another grantable (it only adds holders), so one pass suffices.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

EXCLUSIVE = "exclusive"
SHARED = "shared"


class _Request:
    """One owner's request: its assets (``asset -> exclusive?``) and whether it is held."""

    __slots__ = ("assets", "held", "owner", "seq", "since")

    def __init__(self, owner: int, seq: int, assets: dict[str, bool], since: float | None):
        self.owner = owner
        self.seq = seq  # global arrival order; FIFO comparisons across assets use it
        self.assets = assets
        self.since = since
        self.held = False


class _Asset:
    """Holders and FIFO queue of one asset.

    ``waiters`` holds every waiting request in arrival order; ``exclusive_waiters``
    the exclusive subset, so that "is an exclusive request waiting ahead of me"
    is one look at its first entry. OrderedDict keeps both removal from the
    middle (a withdrawn or granted request) and access to the front O(1).
    """

    __slots__ = ("exclusive_holder", "exclusive_waiters", "name", "shared_holders", "waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.exclusive_holder: int | None = None
        self.shared_holders: dict[int, None] = {}  # a dict for a stable, readable order
        self.waiters: OrderedDict[int, _Request] = OrderedDict()
        self.exclusive_waiters: OrderedDict[int, _Request] = OrderedDict()

    def idle(self) -> bool:
        return self.exclusive_holder is None and not self.shared_holders and not self.waiters

    def free_for_newcomer(self, exclusive: bool) -> bool:
        """Would a request arriving now (behind every current waiter) be served here?"""
        if self.exclusive_holder is not None:
            return False
        if exclusive:
            return not self.shared_holders and not self.waiters
        return not self.exclusive_waiters

    def free_for_waiter(self, req: _Request) -> bool:
        """May the queued request ``req`` be served here now?"""
        if self.exclusive_holder is not None:
            return False
        if req.assets[self.name]:
            return not self.shared_holders and next(iter(self.waiters)) == req.owner
        if not self.exclusive_waiters:
            return True
        return next(iter(self.exclusive_waiters.values())).seq > req.seq

    def candidates(self, dropped_exclusive: bool) -> Iterator[_Request]:
        """Waiters that may have become servable here after a hold or a wait was dropped.

        If the first waiter is exclusive, it is the only possible one. Shared
        waiters before the first exclusive waiter can only have been unblocked
        here if the dropped hold or wait was exclusive: a shared one never
        blocked them. Callers still check each candidate on all its assets.
        """
        if self.exclusive_holder is not None or not self.waiters:
            return
        first = next(iter(self.waiters.values()))
        if first.assets[self.name]:
            if not self.shared_holders:
                yield first
            return
        if not dropped_exclusive:
            return
        for req in self.waiters.values():
            if req.assets[self.name]:
                return
            yield req

    def add_holder(self, owner: int, exclusive: bool) -> None:
        if exclusive:
            self.exclusive_holder = owner
        else:
            self.shared_holders[owner] = None

    def drop_holder(self, owner: int, exclusive: bool) -> None:
        if exclusive:
            self.exclusive_holder = None
        else:
            del self.shared_holders[owner]

    def enqueue(self, req: _Request) -> None:
        self.waiters[req.owner] = req
        if req.assets[self.name]:
            self.exclusive_waiters[req.owner] = req

    def dequeue(self, req: _Request) -> None:
        del self.waiters[req.owner]
        if req.assets[self.name]:
            del self.exclusive_waiters[req.owner]

    def describe(self) -> dict[str, object]:
        holders: list[dict[str, object]] = []
        if self.exclusive_holder is not None:
            holders.append({"job_id": self.exclusive_holder, "mode": EXCLUSIVE})
        holders.extend({"job_id": owner, "mode": SHARED} for owner in self.shared_holders)
        waiters: list[dict[str, object]] = [
            {
                "job_id": req.owner,
                "mode": EXCLUSIVE if req.assets[self.name] else SHARED,
                "since": req.since,
            }
            for req in self.waiters.values()
        ]
        return {"asset": self.name, "holders": holders, "waiters": waiters}


class LockManager:
    """Per-asset FIFO locks with all-or-nothing acquisition; see the module docstring.

    Each owner has at most one request at a time, either waiting or held.
    Not thread-safe: call it from one thread (the engine's event loop).
    """

    def __init__(self) -> None:
        self._assets: dict[str, _Asset] = {}
        # Every live request, in arrival order (dicts keep insertion order).
        self._requests: dict[int, _Request] = {}
        self._seq = 0
        self._holding = 0

    # -- operations -------------------------------------------------------

    def acquire(
        self,
        owner: int,
        exclusive: Iterable[str],
        shared: Iterable[str] = (),
        *,
        now: float | None = None,
    ) -> bool:
        """Enqueue the request; True if granted now (owner now holds all), False if it waits.

        A request with no assets is granted at once (and must still be
        released). ``now`` is kept for :meth:`waiting_since` and shown by ``jobd locks``,
        so give the wall clock (``time.time()``), not a monotonic one. Raises ValueError
        if owner already has a request.
        """
        if owner in self._requests:
            raise ValueError(f"job {owner} already has a lock request")
        assets = dict.fromkeys(shared, False)
        assets.update(dict.fromkeys(exclusive, True))  # exclusive wins over shared
        self._seq += 1
        req = _Request(owner, self._seq, assets, now)
        self._requests[owner] = req
        slots = [self._slot(name) for name in assets]
        if all(slot.free_for_newcomer(assets[slot.name]) for slot in slots):
            for slot in slots:
                slot.add_holder(owner, assets[slot.name])
            self._mark_held(req)
            return True
        for slot in slots:
            slot.enqueue(req)
        return False

    def release(self, owner: int) -> list[int]:
        """Drop owner's holds OR its waiting request (whichever it has; no-op if none).

        Returns the owners granted as a consequence, in grant order (arrival
        order); they now hold their locks. Withdrawing a waiting request (lock
        timeout, cancel, pause) can un-block the requests queued behind it.
        """
        req = self._requests.pop(owner, None)
        if req is None:
            return []
        touched: list[tuple[_Asset, bool]] = []
        for name, exclusive in req.assets.items():
            slot = self._assets[name]
            if req.held:
                slot.drop_holder(owner, exclusive)
            else:
                slot.dequeue(req)
            touched.append((slot, exclusive))
        if req.held:
            self._holding -= 1
        granted = self._grant_candidates(touched)
        for slot, _ in touched:
            if slot.idle():
                del self._assets[slot.name]
        return granted

    def clear(self) -> None:
        """Forget every hold and every waiting request (start-up; locks are never persisted)."""
        self._assets.clear()
        self._requests.clear()
        self._holding = 0

    # -- queries ----------------------------------------------------------

    def holds(self, owner: int) -> bool:
        """True if owner's request has been granted (it holds all its assets)."""
        req = self._requests.get(owner)
        return req is not None and req.held

    def is_waiting(self, owner: int) -> bool:
        """True if owner has a request queued and not yet granted."""
        req = self._requests.get(owner)
        return req is not None and not req.held

    def waiting_since(self, owner: int) -> float | None:
        """The ``now`` given to :meth:`acquire` while owner waits; None if it does not wait
        (or no ``now`` was given)."""
        req = self._requests.get(owner)
        if req is None or req.held:
            return None
        return req.since

    def waiting_owners(self) -> list[int]:
        """Owners whose requests wait, oldest first (for lock-timeout sweeps and listings)."""
        return [req.owner for req in self._requests.values() if not req.held]

    def snapshot(self) -> list[dict[str, object]]:
        """Per asset with holders or waiters, sorted by asset name.

        Each entry is ``{"asset", "holders": [{"job_id", "mode"}], "waiters":
        [{"job_id", "mode", "since"}]}`` with mode ``"exclusive"`` or ``"shared"``,
        waiters in FIFO order and ``since`` the ``now`` given at acquire (or None).
        """
        return [self._assets[name].describe() for name in sorted(self._assets)]

    @property
    def waiting_count(self) -> int:
        """Number of owners whose request waits."""
        return len(self._requests) - self._holding

    @property
    def holder_count(self) -> int:
        """Number of owners holding their locks (a granted request with no assets counts)."""
        return self._holding

    # -- internals --------------------------------------------------------

    def _slot(self, name: str) -> _Asset:
        slot = self._assets.get(name)
        if slot is None:
            slot = self._assets[name] = _Asset(name)
        return slot

    def _mark_held(self, req: _Request) -> None:
        req.held = True
        self._holding += 1

    def _grant_candidates(self, touched: list[tuple[_Asset, bool]]) -> list[int]:
        """Grant every waiter that the drops on ``touched`` made grantable, oldest first.

        Granting only adds holders, so it never makes another waiter grantable:
        one pass over the candidates restores the greedy invariant.
        """
        found: dict[int, _Request] = {}
        for slot, dropped_exclusive in touched:
            for req in slot.candidates(dropped_exclusive):
                found[req.owner] = req
        if not found:
            return []
        ordered = sorted(found.values(), key=_by_seq) if len(found) > 1 else list(found.values())
        granted: list[int] = []
        for req in ordered:
            if self._grant_if_free(req):
                granted.append(req.owner)
        return granted

    def _grant_if_free(self, req: _Request) -> bool:
        slots = [self._assets[name] for name in req.assets]
        if not all(slot.free_for_waiter(req) for slot in slots):
            return False
        for slot in slots:
            slot.dequeue(req)
            slot.add_holder(req.owner, req.assets[slot.name])
        self._mark_held(req)
        return True


def _by_seq(req: _Request) -> int:
    return req.seq
