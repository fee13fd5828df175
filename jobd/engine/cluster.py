"""This node's part in a cluster (SPEC §10): lease, takeover, news from the other nodes
(operations forwarded to the node that holds a job, and the other nodes' events, are
:mod:`.forward`'s and :mod:`.relay`'s).

Two implementations of one surface, chosen by the store: :class:`LocalNode` for a store
of one node (SQLite: nothing crosses nodes, no task, no cost) and :class:`ClusterNode`
on the store's :class:`~jobd.store.cluster.Membership` (PostgreSQL).

A cluster node joins before recovery (its recovery then takes up only the jobs it
holds), renews its lease every third of it and, in the same beat, takes over the nodes
whose lease ran out: their held jobs become its own and are recovered as after a restart
of its own (interrupted attempts; a dead node's process groups are on another host and
were killed by that node's watchdog). It hears, on the node's one connection for the
cluster's news (:class:`~.relay.NewsDesk`), ``jobd_due`` (a job any node may claim: it
runs its due timer and admits from ``pending``) and ``jobd_nodes`` (a node left or was
lost: take over at once), and looks at the due work every ``POLL`` s anyway. A renewal
that fails with :class:`~jobd.store.cluster.Fenced` ends the engine: the node stops.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from jobd.core.errors import JobdError, StoreError
from jobd.engine import fencing
from jobd.engine.context import Context
from jobd.engine.relay import NewsDesk
from jobd.store.cluster import ClusterEvent, Fenced, Membership

log = structlog.get_logger("jobd.engine")
DUE_CHANNEL, NODES_CHANNEL = "jobd_due", "jobd_nodes"
#: Seconds between two looks at the due work and ``pending`` when no notification came.
POLL = 5.0
#: The least time between two looks for lost nodes (another node may be taking one over).
MIN_LOOK = 0.1


#: ``(job ids, from node)``: recover jobs taken over from a lost node.
Adopt = Callable[[list[int], str], Awaitable[None]]


class LocalNode:
    """The one node of a store without a cluster (SQLite)."""

    clustered = False

    def __init__(self, ctx: Context, started_at: float) -> None:
        self._ctx = ctx
        self.started_at = started_at
        self.node = ctx.config.daemon.node

    def bind(self, adopt: Adopt, wake_due: Callable[[], Awaitable[None]]) -> None:
        """Nothing to bind: nothing comes from other nodes."""

    async def join(self) -> None:
        """A node of one joins nothing."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def nodes(self, running: list[int]) -> list[dict[str, Any]]:
        """This node alone, ``up``; ``running`` are the ids of its running jobs."""
        daemon = self._ctx.config.daemon
        return [
            {
                "name": daemon.node,
                "tags": list(daemon.tags),
                "state": "up",
                "renewed_at": self._ctx.clock(),
                "lease": None,
                "epoch": None,
                "started_at": self.started_at,
                "workers": daemon.workers,
                "run_queue_size": daemon.run_queue_size,
                "running_jobs": sorted(running),
            }
        ]


class ClusterNode(LocalNode):
    """A node of a cluster sharing a PostgreSQL database (see the module docstring)."""

    clustered = True

    def __init__(
        self, ctx: Context, started_at: float, membership: Membership, desk: NewsDesk
    ) -> None:
        super().__init__(ctx, started_at)
        self._m = membership
        # Heard on the node's one connection for the cluster's news (a lost one: a poll).
        for channel in (DUE_CHANNEL, NODES_CHANNEL):
            desk.read(channel, partial(self._heard, channel))
        self._adopt: Adopt | None = None
        self._wake_due: Callable[[], Awaitable[None]] | None = None
        self._due_wanted = anyio.Event()
        self._takeover_wanted = anyio.Event()

    def bind(self, adopt: Adopt, wake_due: Callable[[], Awaitable[None]]) -> None:
        self._adopt, self._wake_due = adopt, wake_due

    @property
    def lease(self) -> float:
        return self._ctx.config.daemon.lease

    async def join(self) -> None:
        daemon = self._ctx.config.daemon
        sent = fencing.clock()
        await self._m.join(
            tags=daemon.tags,
            workers=daemon.workers,
            run_queue_size=daemon.run_queue_size,
            lease=daemon.lease,
            api=str(self._ctx.config.api.listen or self._ctx.config.api.socket),
        )
        self._renewed(sent)

    def _renewed(self, sent: float) -> None:
        watchdog = fencing.current()
        if watchdog is not None:
            if watchdog.broken:
                raise Fenced(f"node {self.node}: its watchdog process is gone")
            watchdog.renewed(sent)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Lease, takeover, notifications and due work; until cancelled or fenced."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._poll)
            tg.start_soon(self._due_loop)
            task_status.started()
            await self._lease_loop()

    async def _lease_loop(self) -> None:
        """Renew every third of the lease; look for lost nodes then too, and also as soon as
        the earliest lease of another node runs out (so a takeover comes right after it)."""
        renew_at = 0.0  # monotonic: when the next renewal is due
        expiry: float | None = None  # seconds until another node's lease runs out
        while True:
            wait = max(0.0, renew_at - time.monotonic())
            if expiry is not None:
                wait = min(wait, max(MIN_LOOK, expiry + MIN_LOOK))
            with anyio.move_on_after(wait):  # the lease's pace, or a node's news
                await self._takeover_wanted.wait()
            self._takeover_wanted = anyio.Event()
            try:
                if time.monotonic() >= renew_at:
                    # Paced from the send, as the lease is; a failed one is tried again soon
                    # (below), not at once: a refused connection fails at once.
                    renew_at = time.monotonic() + self.lease / 3
                    sent = fencing.clock()  # the watchdog's clock
                    await self._m.renew()
                    self._renewed(sent)
                taken = await self._m.take_over()
                expiry = await self._m.next_expiry()
            except Fenced:
                raise
            except StoreError as exc:
                log.warning("lease renewal or takeover failed; trying again", error=str(exc))
                renew_at = min(renew_at, time.monotonic() + MIN_LOOK * 5)
                expiry = None
                continue
            for dead, ids in taken:
                log.warning("took over a lost node", node=dead, jobs=ids)
                if ids and self._adopt is not None:
                    try:
                        await self._adopt(ids, dead)
                    except Fenced:
                        raise
                    except JobdError as exc:  # one job's trouble: the others are taken up
                        log.error("taking up a lost node's jobs failed", node=dead, error=str(exc))

    async def _due_loop(self) -> None:
        while True:
            await self._due_wanted.wait()
            self._due_wanted = anyio.Event()
            if self._wake_due is not None and self._ctx.accepting:
                try:
                    await self._wake_due()
                except JobdError as exc:
                    log.warning("looking at due work failed", error=str(exc))

    async def _poll(self) -> None:
        """The fallback: due work and ``pending`` looked at every POLL s anyway."""
        while True:
            await anyio.sleep(POLL)  # a fallback's pace, not a synchronisation
            self._on(("poll", ""))

    def _heard(self, channel: str, payload: str | None) -> None:
        self._on(("poll", "") if payload is None else (channel, payload))

    def _on(self, event: ClusterEvent) -> None:
        channel, payload = event
        if channel == "poll":
            self._due_wanted.set()
        elif channel == DUE_CHANNEL:
            if payload.rpartition(" ")[2] != self.node:  # not its own writes
                self._due_wanted.set()
        elif channel == NODES_CHANNEL:
            self._takeover_wanted.set()

    async def nodes(self, running: list[int]) -> list[dict[str, Any]]:
        return await self._m.nodes()
