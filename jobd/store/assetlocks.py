"""The contract of the asset locks a cluster's database keeps (SPEC §3.4, §10): what a
node's lock hand-off (``jobd.engine.cluster_handoff``) may ask of them and is told.

A store of one node keeps none (``Store.asset_locks`` answers ``None``: the engine's
locks are in memory); PostgreSQL's are :class:`jobd.store.postgres.locks.PgAssetLocks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

#: A unit of work, the contract's ``jobd.store.contract.Changes``: an intent is added to it,
#: and it is returned. (Named, not imported: the contract imports this module.)
Changes = Any


@dataclass(frozen=True, slots=True)
class LockStart:
    """A job's start, carried by its lock request and written by the transaction that
    grants it (the one-commit hand-off): the job ``waiting-for-lock`` -> ``running`` and,
    when ``step`` is not None, that step's attempt begun (``attempts`` its count once
    begun; state ``running``, ``started_at`` the grant's time). In a request ``at`` is 0;
    in a ``started`` event it is the time the database wrote."""

    step: int | None
    attempts: int | None
    at: float = 0.0


#: What :meth:`AssetLocks.listen` reports: ``("granted", job)``, ``("started", job,
#: LockStart)``, ``("recheck", job)``, ``("poll", 0)`` or ``("resync", 0)``.
LockEvent = tuple[str, int] | tuple[str, int, LockStart]


class AssetLocks(ABC):
    """Per-asset locks kept in the database for the nodes of a cluster (SPEC §3.4, §10).

    The rules are those of the in-memory ``LockManager``: a job's request names exclusive
    and shared assets and is granted all of them at once or none; waiters are served
    strictly FIFO per asset, in one arrival order across every node. The grant runs in the
    very transaction that adds a waiter or drops a request, and the node of every job it
    grants is told (``granted``, or ``started`` when the request carried its job's start and
    the grant wrote it), whichever node it is; only that node acts on it.

    Requests and releases are intents added to a unit of work (they land with the unit's
    transition, or not at all). One request per job; asking again keeps its place."""

    node: str

    @abstractmethod
    def request(
        self,
        unit: Changes,
        job_id: int,
        exclusive: Sequence[str],
        shared: Sequence[str],
        since: float,
        start: LockStart | None = None,
    ) -> Changes:
        """Enqueue this node's request for the job's assets (an asset in both is exclusive);
        granted in the same transaction when it may be. With ``start``, whichever
        transaction grants it (this one, or any node's release) also writes the job's
        start, if the job is still ``waiting-for-lock`` then, and tells ``started``; else
        ``granted``, and the node writes the start itself. Asked again by this node, the
        request keeps its place, takes the new ``start``, and what it holds is told again."""

    @abstractmethod
    def release(self, unit: Changes, job_id: int) -> Changes:
        """Drop this node's request for the job, held or waiting (none is fine), and grant
        the waiters that this frees. A start the grant wrote stays (the job ran)."""

    @abstractmethod
    def withdraw(self, unit: Changes, job_id: int) -> Changes:
        """:meth:`release` for a job this node never ran: a start that a grant wrote and
        this node did not take up is put back first (the job ``waiting-for-lock`` again,
        as it was, that history row gone, the step as it was), so that the job's next
        transition, from ``waiting-for-lock``, finds it so."""

    @abstractmethod
    def unstart(self, unit: Changes, job_id: int) -> Changes:
        """Put back a start that a grant wrote and this node will not take up now (it
        stops), keeping the grant: on its next start the job holds its assets and its
        node writes the start itself. Nothing when no grant started the job."""

    @abstractmethod
    def regrant(self, unit: Changes, job_id: int) -> Changes:
        """Grant the job's waiting request if it may be granted now (after ``recheck``)."""

    @abstractmethod
    async def release_node_locks(self, node: str) -> list[int]:
        """Takeover: every request of ``node`` goes, in one transaction: a held one is
        dropped (its run was interrupted) and the waiters this frees are granted, their
        nodes told; a waiting one whose job a takeover gave to another node becomes that
        node's, in the same place (else it is dropped too). The jobs of those requests, in
        request order. Only once ``node`` is fenced (its lease ran out)."""

    @abstractmethod
    async def mine(self) -> dict[int, bool]:
        """This node's requests in arrival order: ``{job_id: held}``."""

    @abstractmethod
    async def starts(self) -> dict[int, LockStart]:
        """This node's held requests whose grant wrote their job's start, and that start
        (what ``started`` told, for a node that may have missed it)."""

    @abstractmethod
    async def snapshot(self) -> list[dict[str, Any]]:
        """Every asset with holders or waiters, by name, across the cluster: ``{"asset",
        "holders": [{"job_id", "mode", "node", "since"}], "waiters": [{"job_id", "mode",
        "node", "since"}]}``, waiters in FIFO order (holders' ``since``: when granted)."""

    @abstractmethod
    async def listen(
        self,
        report: Callable[[LockEvent], None],
        poll: float,
        *,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled: call ``report`` with each event for this node, as the database
        sends it (LISTEN/NOTIFY): ``granted`` (the job holds its assets now), ``started``
        (it holds them and its start is written: run it) or ``recheck`` (commit
        :meth:`regrant` for it). Also ``("poll", 0)`` every ``poll`` s, and ``("resync",
        0)`` once listening (again, after a lost connection): the caller then checks
        :meth:`mine` and :meth:`starts` (the fallback; after a resync it also regrants its
        waiters). ``task_status.started()`` once it first listens (``TaskGroup.start``);
        raises :class:`~jobd.core.errors.StoreError` if it cannot listen at all at first
        (later, a lost connection is opened again)."""
