"""Set-wise transitions on PostgreSQL (``Store.transition_many``): many jobs, one statement.

The contract's default writes one unit per job (a guarded ``transition`` and a ``history``
row each, ~10,000 units for a batch cancel of 10,000 jobs, every one through the batch's
JSON, ``jobd_apply_bulk``'s unnest and the answers' futures). Here the whole set is ONE
statement, :data:`~jobd.store.postgres.queries.TRANSITION_MANY`: the guarded UPDATE of
every id still in the from-state, its RETURNING feeding the INSERT of their history rows
and (``release``) the DELETE of their reservations, in data-modifying CTEs, in one
transaction with the node's fencing token checked first.

The guard is per job, as each unit's own: the UPDATE's ``state = from`` skips a job that
moved meanwhile, and the claim trigger (``sql/migrate-9.sql``) skips, row by row, a job
that another node holds; only the rows updated are returned, so only those get a history
row and a release. The writer applies the unit alone, in the order it was queued
(:func:`take`): the units queued before it are committed first, those after it after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from jobd.core.states import JobState
from jobd.store.postgres import queries as q
from jobd.store.postgres.units import PgUnit


class ManyUnit(PgUnit):
    """A set-wise transition for the writer (no ``jobd_apply`` statements): its answer,
    the ids moved, is :attr:`moved` once applied."""

    __slots__ = ("moved", "params", "sql")

    def __init__(
        self,
        job_ids: Sequence[int],
        from_state: JobState,
        to_state: JobState,
        at: float,
        cause: str,
        actor: str,
        release: bool,
    ) -> None:
        super().__init__()
        self.sql = q.TRANSITION_MANY.format(release=q.RELEASE_MOVED if release else "")
        self.params = {
            "ids": sorted({int(i) for i in job_ids}),
            "frm": str(from_state),
            "to": str(to_state),
            "at": at,
            "cause": cause,
            "actor": actor,
        }
        self.moved: list[int] = []

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], token: tuple[str, int] | tuple[()]
    ) -> None:
        """Apply the unit on the writer's connection, in a transaction of its own (the
        fencing ``token`` checked first, when the store is a node's)."""
        async with conn.transaction():
            if token:
                await conn.execute(q.FENCE_ALONE, token)
            cur = await conn.execute(self.sql, self.params)
            self.moved = [row[0] for row in await cur.fetchall()]


def take(queue: list[Any]) -> tuple[list[Any], list[Any]]:
    """The next batch of the writer's ``queue`` (``(unit, answer)`` pairs) and the rest:
    every unit up to the first :class:`ManyUnit`, or that unit alone when it is first."""
    for i, (unit, _) in enumerate(queue):
        if isinstance(unit, ManyUnit):
            cut = i or 1
            return queue[:cut], queue[cut:]
    return queue, []
