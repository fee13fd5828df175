"""What the nodes of a cluster ask of the one database they share, beyond the store
contract (SPEC §10): ids no other node uses, bookings the database enforces, and news of
the other nodes' bookings.

:class:`SharedDatabase` gives each question the answer of a store of ONE node (SQLite),
which the engine takes as "nothing to share": it numbers its jobs itself, and its booking
index is the only booker. A cluster's store (PostgreSQL) answers them for real.
:class:`~jobd.store.contract.Store` inherits it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

if TYPE_CHECKING:
    from jobd.store.news import News


class SharedDatabase:
    """The cluster's questions, answered as by a store of one node."""

    __slots__ = ()

    async def take_ids(self, n: int) -> int | None:
        """The first of ``n`` consecutive job ids that no node sharing this database has
        used or will be given (``n >= 1``), or ``None`` from a store of one node (SQLite):
        the engine then numbers its jobs itself, on from ``Store.max_job_id``.

        A cluster's store takes them from the database (PostgreSQL: a sequence), never below
        an id already used; an id taken and never used is a gap, not an error."""
        return None

    async def set_capacities(self, capacities: Mapping[str, int]) -> None:
        """The capacity of every configured resource, for a store that enforces bookings
        itself (PostgreSQL: a resource of capacity ``N`` has ``N`` slots); the engine calls
        it at start-up and on every reload, before it books. A store of one node has no use
        for it (its node's booking index is the only one that books)."""
        return None

    async def follow_reservations(
        self,
        changed: Callable[[list[int] | None, list[int]], Awaitable[None]],
        *,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        """Run until cancelled, calling ``changed(heard, in_the_way)`` with job ids: ``heard``,
        jobs whose reservations another node added or dropped; ``in_the_way``, jobs whose
        reservations stood in the way of a booking the database refused (a backend that
        enforces bookings); ``heard`` is None when news may have been missed (listening
        again after a lost connection): every reservation is to be read again. The engine
        re-reads them into its booking index. Started (for
        ``TaskGroup.start``) once listening, so that the reservations read after it miss no
        later change. A store of one node has no other writer: started, and returns."""
        task_status.started()

    def news(self) -> News | None:
        """The messages the nodes sharing this database send each other (events, forwarded
        operations: :mod:`jobd.store.news`), or ``None`` from a store of one node (SQLite):
        there is no other node to tell."""
        return None
