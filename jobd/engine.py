"""The engine: every operation on a job, the one state-changing path, recovery at start-up.

INTERFACE SKELETON (being implemented). The API, CLI and daemon code against
these signatures.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from jobd.config import Config
from jobd.events import JobEvent
from jobd.models import Job, JobSpec
from jobd.plugins import PluginHost
from jobd.states import JobState
from jobd.store import Store


class Engine:
    """Owns the run queue, workers, lock manager, bookings and timers; writes through the store."""

    config: Config

    def __init__(
        self,
        config: Config,
        store: Store,
        plugins: PluginHost,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``store`` comes from ``async with jobd.store.open_store(config.daemon.db_path,
        synchronous=config.daemon.synchronous) as store``; ``plugins`` is a loaded PluginHost."""
        raise NotImplementedError

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        """Call ``listener(event)`` (synchronously, on the event loop) after each committed
        change; metrics use this. A raising listener is logged and ignored."""
        raise NotImplementedError

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover from the store, start workers and timers, then ``task_status.started()``.

        Runs until cancelled; call :meth:`drain` first for a graceful stop.
        """
        raise NotImplementedError

    async def drain(self, grace: float) -> None:
        """Stop admitting jobs; let running steps finish for ``grace`` s, then interrupt them
        (recorded as interrupted, resumed on the next start)."""
        raise NotImplementedError

    async def submit(self, spec: JobSpec, *, actor: str = "api") -> Job:
        """Validate ``spec`` (workflow exists, params templating, plugin validators, bookings),
        store it and return the job. Raises ValidationError, BookingConflict."""
        raise NotImplementedError

    async def edit(self, job_id: int, changes: dict[str, Any], *, actor: str = "api") -> Job:
        """PATCH: change spec fields while draft/tentative/confirmed; reservations re-checked."""
        raise NotImplementedError

    async def operate(self, job_id: int, operation: str, *, actor: str = "api") -> Job | None:
        """Apply a public operation of SPEC §2 (cancel, stop, pause, resume, retry, restart,
        confirm, tentative, unconfirm, resubmit, invoice-ready, invoiced, delete).

        Returns the job after the change (for ``resubmit`` the NEW job; for ``delete`` None).
        Raises NotFound, InvalidTransition (409), BookingConflict (409).
        """
        raise NotImplementedError

    async def get_job(self, job_id: int) -> Job:
        """One job with steps, reservations and history. Raises NotFound."""
        raise NotImplementedError

    async def list_jobs(
        self, states: list[JobState] | None = None, limit: int = 100, cursor: int | None = None
    ) -> tuple[list[Job], int | None]:
        """Newest first (by id). ``cursor`` is the id to continue below; returns (jobs, next_cursor).
        Listed jobs carry no steps/history (empty lists) to keep lists cheap."""
        raise NotImplementedError

    async def job_log(
        self, job_id: int, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Log lines of a job with ``seq > after``: each ``{seq, at, step, level, message}``."""
        raise NotImplementedError

    def queue_info(self) -> dict[str, Any]:
        """``{capacity, queued: [ids in order], pending, running: [ids], waiting_for_lock: [ids],
        workers, busy_workers}``."""
        raise NotImplementedError

    def locks_info(self) -> list[dict[str, Any]]:
        """Per asset: ``{asset, holders: [{job_id, mode}], waiters: [{job_id, mode, since}]}``."""
        raise NotImplementedError

    async def resources_info(self) -> list[dict[str, Any]]:
        """Per resource: ``{name, capacity, pools, current: [job ids], upcoming: int}``."""
        raise NotImplementedError

    async def bookings(self, start: float | None, end: float | None) -> list[dict[str, Any]]:
        """Reservations overlapping ``[start, end]``: ``{job_id, job_name, state, resource, start, end}``."""
        raise NotImplementedError

    async def schedules_info(self) -> list[dict[str, Any]]:
        """Per schedule: ``{name, workflow, cron, interval, timezone, next_fire_at, last_fire_at,
        last_job_id, missed, skipped, overlap, misfire}``."""
        raise NotImplementedError

    def plugins_info(self) -> dict[str, Any]:
        """``{plugins: [{name, file, actions, error}], actions: [{name, plugin, description}]}``."""
        raise NotImplementedError

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[JobEvent]]:
        """Every committed event from now on, for the SSE stream; a slow reader is dropped."""
        raise NotImplementedError
        yield  # pragma: no cover

    async def reload(self, config: Config) -> list[str]:
        """Swap in a new, already-validated config; returns warnings (e.g. jobs whose resources
        vanished, which now carry an error overlay)."""
        raise NotImplementedError
