"""The cluster's news between nodes (SPEC §10): short messages that every node sharing the
database hears, used for the events of other nodes (each node's ``GET /v1/events`` shows
every node's committed events) and the operations forwarded to the node that holds a job.

A store of one node (SQLite) has no other node to tell: :meth:`Store.news
<jobd.store.shared.SharedDatabase.news>` answers ``None`` and the engine keeps everything
local, at no cost. The PostgreSQL store's is :mod:`jobd.store.postgres.news` (NOTIFY on
the store's readers, LISTEN on one connection of its own).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

#: The largest payload one message may carry, in bytes of UTF-8 (PostgreSQL refuses a
#: NOTIFY payload of 8000 bytes or more; a little is kept for the channel's framing).
MAX_PAYLOAD = 7900
#: The channel of the nodes' committed events, and of the operations forwarded to a node.
EVENTS, OPERATIONS = "jobd_events", "jobd_ops"
#: What :meth:`News.follow` reports: ``(channel, payload)``; ``("resync", "")`` once
#: listening again after a lost connection (messages sent meanwhile were missed).
Message = tuple[str, str]


class News(ABC):
    """Messages to and from every node of the cluster, at most :data:`MAX_PAYLOAD` bytes
    each. Delivery is at most once, in the order they were sent by one sender, to every
    node listening when they are sent (the sender included: it drops its own)."""

    @abstractmethod
    async def publish(self, channel: str, payloads: Sequence[str]) -> None:
        """Send ``payloads`` on ``channel``, in this order, in one round trip (not part of
        any write's transaction: send what is committed). Raises StoreError."""

    @abstractmethod
    async def holders(self, job_ids: Sequence[int]) -> dict[int, str]:
        """The node that holds each job of ``job_ids`` that a node holds (one of the held
        states: ``queued``, ``waiting-for-lock``, ``running``, ``cancel-requested``), read
        in one round trip: where an operation on it must be done. Raises StoreError."""

    @abstractmethod
    async def follow(
        self,
        channels: Sequence[str],
        report: Callable[[Message], None],
        *,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled: call ``report((channel, payload))`` for every message on
        ``channels`` (synchronously, on the event loop); started once listening (a message
        sent after that is heard); after a lost connection it listens again and reports
        ``("resync", "")``."""
