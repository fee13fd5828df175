"""What the PostgreSQL database itself enforces across the nodes of a cluster, and how
its answers reach the engine (SPEC §10; ``sql/migrate-6.sql``).

**Bookings**: the exclusion constraint ``reservations_never_double_booked`` and the
trigger that gives each reservation a slot of its resource (capacity ``N``: ``N``
slots). A reservation the database refuses fails its unit with the same
:class:`~jobd.core.errors.BookingConflict` (409) the booking index raises, naming the
resource and the jobs in the way (:func:`refusal`). Each node writes the capacities
of its configuration (:func:`set_capacities`) and hears of the bookings other nodes
add or drop through ``NOTIFY jobd_bookings`` (:func:`follow_reservations`), so that
its booking index sees them before it plans the next booking; a refusal by the
database also names the jobs in the way to the same listener (reload on conflict).

**Schedules**: one record per firing (``sql/migrate-7.sql``); another node's record of
the same firing fails the unit's guard (:func:`firing_claimed`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import psycopg
import structlog
from anyio.abc import TaskStatus

from jobd.core.errors import BookingConflict, StoreError
from jobd.core.timefmt import format_time
from jobd.store.postgres import queries as q
from jobd.store.postgres.units import PgUnit

log = structlog.get_logger("jobd.store")
#: The constraint (and the SQLSTATE) of a booking the database refused.
CONSTRAINT = "reservations_never_double_booked"
EXCLUSION_VIOLATION = "23P01"
#: The key of a schedule firing already recorded (``sql/migrate-7.sql``).
FIRING_CLAIMED = "schedule_firings_pkey"
UNIQUE_VIOLATION = "23505"
#: The channel of the reservation news, and seconds between attempts to listen again.
CHANNEL = "jobd_bookings"
RELISTEN_AFTER = 1.0


def firing_claimed(exc: psycopg.Error) -> bool:
    """Whether ``exc`` is another node's record of the same schedule firing (a lost race:
    the unit's guard failed, it is no error)."""
    return exc.sqlstate == UNIQUE_VIOLATION and exc.diag.constraint_name == FIRING_CLAIMED


def refusal(exc: psycopg.Error, unit: PgUnit) -> BookingConflict | None:
    """The booking conflict ``exc`` is, for the unit it refused; None if it is none."""
    diag = exc.diag
    if exc.sqlstate != EXCLUSION_VIOLATION or diag.constraint_name != CONSTRAINT:
        return None
    try:
        detail = json.loads(diag.message_detail or "")
        resource, jobs = str(detail["resource"]), sorted(int(j) for j in detail["jobs"])
    except (ValueError, KeyError, TypeError):  # the constraint's own message: a race lost
        resource, jobs = "", []
    reserves = [s for s in unit.statements if s[0] == "reserve"]
    mine = [s for s in reserves if s[2] == resource] or reserves
    if not mine:  # pragma: no cover - only a reservation can break the constraint
        return None
    _, _, name, start, end, _ = mine[0]
    return BookingConflict(
        name, format_time(start) or str(start), format_time(end) or str(end), jobs
    )


async def set_capacities(conn: psycopg.AsyncConnection[Any], capacities: Mapping[str, int]) -> None:
    """Make ``jobd_resources`` the configuration's resources and capacities (one
    transaction: another node never sees half of it; nodes starting together take turns)."""
    async with conn.transaction():
        await conn.execute(q.LOCK_RESOURCES)
        await conn.execute(q.CLEAR_RESOURCES)
        if capacities:
            async with conn.cursor() as cur:
                await cur.executemany(q.INSERT_RESOURCE, list(capacities.items()))


#: ``changed(heard, in_the_way)``: see :meth:`jobd.store.contract.Store.follow_reservations`.
Changed = Callable[[list[int] | None, list[int]], Awaitable[None]]


class ReservationNews:
    """Job ids whose reservations changed by another hand, gathered for the engine: from
    other nodes' NOTIFY (heard), and from the database's refusals of this node's bookings
    (in the way)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._heard: set[int] = set()
        self._in_the_way: set[int] = set()
        self._arrived = anyio.Event()
        #: Listening again after a loss: the next news is "all of them" (``heard`` None).
        self._resync = False
        #: The writer's backend pid: this node's own news is no news.
        self.own_pid = 0

    def add(self, job_ids: list[int], *, refused: bool = False) -> None:
        if job_ids:
            (self._in_the_way if refused else self._heard).update(job_ids)
            self._arrived.set()

    async def follow(
        self, changed: Changed, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Until cancelled: listen (started once listening: no later change is missed), and
        hand each gathering of news to ``changed``, one at a time."""
        async with anyio.create_task_group() as tg:
            await tg.start(self._listen)
            task_status.started()
            while True:
                await self._arrived.wait()
                self._arrived = anyio.Event()
                heard: list[int] | None = sorted(self._heard)
                if self._resync:  # news may have been missed: the engine reads them all
                    heard, self._resync = None, False
                self._heard = set()
                in_the_way, self._in_the_way = sorted(self._in_the_way), set()
                await changed(heard, in_the_way)

    async def _listen(self, *, task_status: TaskStatus[None]) -> None:
        started = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                try:
                    await conn.execute(q.LISTEN_BOOKINGS)
                    if not started:
                        started = True
                        task_status.started()
                    else:  # listening again after a loss: what came meanwhile is unheard
                        self._resync = True
                        self._arrived.set()
                    async for note in conn.notifies():
                        self._note(note.payload)
                finally:
                    with anyio.CancelScope(shield=True):  # cancelled or lost: close it anyway
                        await conn.close()
            except psycopg.Error as exc:
                if not started:
                    raise StoreError(f"cannot listen for other nodes' bookings: {exc}") from exc
                # The writer notices a lost database and stops the daemon; until then, a
                # booking planned without this news is still refused by the database.
                log.warning("lost the reservation news; listening again", error=str(exc))
                await anyio.sleep(RELISTEN_AFTER)  # a retry's pace, not a synchronisation

    def _note(self, payload: str) -> None:
        pid, _, job = payload.partition(" ")
        if pid != str(self.own_pid) and job.isdigit():
            self.add([int(job)])
