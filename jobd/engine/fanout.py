"""Event fan-out: every committed change told to listeners, SSE subscribers and plugins.

Called only after the change's COMMIT (by :class:`~.transitions.Transitions` and the
few writes that are not transitions), synchronously on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from jobd.core.events import JobEvent
from jobd.core.models import Job, Step
from jobd.core.states import JobState
from jobd.engine.context import Context
from jobd.engine.lineup import Lineup

log = structlog.get_logger("jobd.engine")


class Fanout:
    def __init__(self, ctx: Context, lineup: Lineup) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._clock = ctx.clock
        self.listeners: list[Callable[[JobEvent], None]] = []
        self.subscribers: set[MemoryObjectSendStream[JobEvent]] = set()
        #: The subscribers that follow a job's log too (``subscribe(log_of=ID)``), by job.
        self.log_followers: dict[int, set[MemoryObjectSendStream[JobEvent]]] = {}
        #: Told of each log line written here (a cluster's relay: other nodes follow it).
        self.on_log: Callable[[int, float], None] | None = None
        #: Whether any plugin observes events (known once plugins are loaded: at run).
        self.has_observers = False

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        self.listeners.append(listener)

    def emit(self, event: JobEvent, job: Job | None = None) -> None:
        """Tell everyone; a raising listener is logged, a slow subscriber dropped."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed", listener=repr(listener))
        if self.subscribers:
            self.relay(event)
        if self.has_observers:
            rc = self._lineup.get(event.job_id)
            data = job or (rc.job if rc else None)
            self._ctx.plugins.job_event(
                data.to_dict() if data else {"id": event.job_id}, event.to_dict()
            )

    def relay(self, event: JobEvent) -> None:
        """An event another node of a cluster committed (:mod:`.relay`): to this node's SSE
        subscribers only (its listeners and plugins observe the node's own events)."""
        for stream in list(self.subscribers):
            self._offer(stream, event)

    def _offer(self, stream: MemoryObjectSendStream[JobEvent], event: JobEvent) -> None:
        try:
            stream.send_nowait(event)
        except anyio.WouldBlock:
            log.warning("dropping a slow event subscriber")
            self.subscribers.discard(stream)
            stream.close()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.subscribers.discard(stream)

    def log_written(self, job_id: int, at: float) -> None:
        """A line of ``job_id``'s log was handed to the store, not yet committed: wake the
        subscribers that follow that log with a ``kind="log"`` marker. They flush the
        store and read what is new (a line's ``seq`` is the store's to give); listeners
        and plugins are not told (a line is no change of the job)."""
        self.log_relayed(job_id, at)
        if self.on_log is not None:
            self.on_log(job_id, at)

    def log_relayed(self, job_id: int, at: float) -> None:
        """A ``kind="log"`` marker to the subscribers following ``job_id``'s log only (a
        line another node of a cluster committed comes this way, from :mod:`.relay`)."""
        followers = self.log_followers.get(job_id)
        if followers:
            marker = JobEvent(job_id, "log", at)
            for stream in list(followers):
                self._offer(stream, marker)

    def step_event(self, job: Job, step: Step, job_state: JobState | None = None) -> None:
        state = job.state if job_state is None else job_state
        data: dict[str, Any] = {"state": str(step.state), "attempt": step.attempts}
        if step.ended_at is not None and step.started_at is not None:
            data["duration"] = step.ended_at - step.started_at
        if step.error:
            data["error"] = step.error
        self.emit(
            JobEvent(
                job.id,
                "step",
                self._clock(),
                state,
                state,
                f"step {step.name} {step.state}",
                "scheduler",
                step.name,
                data,
            )
        )

    @asynccontextmanager
    async def subscribe(
        self, log_of: int | None = None
    ) -> AsyncIterator[MemoryObjectReceiveStream[JobEvent]]:
        send, receive = anyio.create_memory_object_stream[JobEvent](10_000)
        self.subscribers.add(send)
        if log_of is not None:
            self.log_followers.setdefault(log_of, set()).add(send)
        try:
            async with receive:
                yield receive
        finally:
            self.subscribers.discard(send)
            if log_of is not None:
                followers = self.log_followers.get(log_of, set())
                followers.discard(send)
                if not followers:
                    self.log_followers.pop(log_of, None)
            send.close()
