"""Job ids for intake, handed out from memory: intake never awaits between its checks
and the id it gives the job it accepted.

One node (SQLite): ids are counted on from the store's highest id, as they always
were; a refusal uses no id, so they stay dense. A cluster's node (PostgreSQL) takes
blocks of :data:`BLOCK` ids from the database (:meth:`Store.take_ids`) and fetches
the next block in the background once fewer than half a block are left, so that a
steady stream of submissions never waits for one. Ids are unique across the nodes;
they are not ordered by submission across nodes (each node has its own block), and
the unused rest of a node's block is a gap when the node stops.
"""

from __future__ import annotations

import anyio

from jobd.engine.context import Context

#: Ids a cluster's node takes from the database at a time.
BLOCK = 512
#: The upper end of a one-node store's single block: every id it will ever use.
_UNBOUNDED = 2**63 - 1


class JobIds:
    """The ids this node may give, as blocks ``[next, end)`` in order; :meth:`take` is
    synchronous. Before a submission's checks, intake awaits :meth:`ensure` for the ids it
    may need (a no-op on one node, and on a cluster's node with ids to spare)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._blocks: list[list[int]] = [[1, _UNBOUNDED]]
        self._shared = False
        self._filling: anyio.Event | None = None

    async def load(self) -> None:
        """At start-up (recovery): the first block, from the store (a cluster) or counted on
        from the highest id used (one node)."""
        store = self._ctx.store
        first = await store.take_ids(BLOCK)
        if first is None:
            self._blocks = [[await store.max_job_id() + 1, _UNBOUNDED]]
        else:
            self._shared = True
            self._blocks = [[first, first + BLOCK]]

    def available(self) -> int:
        return sum(end - nxt for nxt, end in self._blocks)

    def peek(self, k: int = 0) -> int:
        """The id the ``k``-th next :meth:`take` gives (``k`` from 0); ``k`` below
        :meth:`available`."""
        for nxt, end in self._blocks:
            if k < end - nxt:
                return nxt + k
            k -= end - nxt
        raise IndexError("not that many job ids in hand: await ensure() first")

    def take(self, n: int = 1) -> None:
        """Use up the next ``n`` ids (those :meth:`peek` showed)."""
        while n:
            block = self._blocks[0]
            used = min(n, block[1] - block[0])
            block[0] += used
            n -= used
            if block[0] == block[1]:
                self._blocks.pop(0)
        if self._shared and self.available() < BLOCK // 2 and self._filling is None:
            self._ctx.spawn(self._fill, BLOCK)

    async def ensure(self, n: int) -> None:
        """Return once at least ``n`` ids are in hand (at once on one node)."""
        while self.available() < n:
            if self._filling is not None:
                await self._filling.wait()
            else:
                await self._fill(max(BLOCK, n - self.available()))

    async def _fill(self, n: int) -> None:
        """Take ``n`` more ids from the store; one fill at a time."""
        if self._filling is not None:
            return
        self._filling = anyio.Event()
        try:
            first = await self._ctx.store.take_ids(n)
            if first is not None:
                self._blocks.append([first, first + n])
        finally:
            self._filling.set()
            self._filling = None
