"""The store's contract for the nodes of a cluster (SPEC §10): membership, leases, fencing.

A store of one node (SQLite) has none of this: :meth:`jobd.store.contract.Store.membership`
answers ``None`` and the engine uses its local, in-memory implementation. The PostgreSQL
store's is :mod:`jobd.store.postgres.nodes`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from jobd.core.errors import StoreError


class Fenced(StoreError):
    """This node may no longer write: its lease ran out, or another node took it over
    (SPEC §10). Raised by a write batch of a fenced node (nothing of it was applied) and by
    :meth:`Membership.renew`; the node must stop its steps and leave (the daemon exits)."""

    code = "fenced"


#: What the engine's cluster node hears: ``(channel, payload)``; ``("poll", "")`` every few
#: seconds and after a lost connection is back (the cluster's news: :mod:`jobd.store.news`).
ClusterEvent = tuple[str, str]


class Membership(ABC):
    """This node's membership of a cluster sharing the database (SPEC §10).

    A node :meth:`join` s with a new epoch, :meth:`renew` s its lease every third of it, and
    :meth:`leave` s when it stops. From the join on, every write batch of the store checks
    the node's fencing token (its row ``up``, its epoch, its lease unexpired) in the same
    transaction, and fails with :class:`Fenced` otherwise. A job that enters a held state
    (``queued``, ``waiting-for-lock``, ``running``, ``cancel-requested``) becomes this node's
    (the claim), and a transition out of a held state of a job another node holds fails its
    guard (:class:`GuardFailed`)."""

    node: str

    @abstractmethod
    async def join(
        self, *, tags: Sequence[str], workers: int, run_queue_size: int, lease: float, api: str
    ) -> int:
        """Join (or rejoin with a new epoch); the epoch. The active jobs no node holds (a
        database from before the cluster) become this node's when it is the first to join."""

    @abstractmethod
    async def renew(self) -> None:
        """Renew the lease; raises :class:`Fenced` when it is no longer ours to renew (lost,
        or already run out: a lease that ran out is never revived), StoreError when the
        database cannot be reached."""

    @abstractmethod
    async def leave(self) -> None:
        """Stop being a node (``left``): the jobs it still holds are taken over at once."""

    @abstractmethod
    async def take_over(self) -> list[tuple[str, list[int]]]:
        """Take over every node whose lease ran out (and every node that left holding jobs)
        that no other node is taking over: ``lost``, its held jobs this node's, its asset
        locks to the next waiters, in one transaction. ``[(node, job ids)]`` per node taken;
        the caller recovers those jobs as after its own restart."""

    @abstractmethod
    async def next_expiry(self) -> float | None:
        """Seconds until the earliest lease of another ``up`` node runs out (negative: it
        has, and nobody took it over yet); None when there is no other node up."""

    @abstractmethod
    async def nodes(self) -> list[dict[str, Any]]:
        """Every node ever joined, by name: ``{name, tags, state ('up', 'lost', 'left'),
        renewed_at, lease, epoch, started_at, workers, run_queue_size, running_jobs: [ids],
        api, pid, host}``; a node whose lease ran out but that nobody took over yet shows
        ``lost``."""
