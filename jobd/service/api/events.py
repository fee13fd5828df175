"""``GET /v1/events``: the Server-Sent Events stream of committed job events (SPEC §7),
with a job's log lines on it when asked (``?job=ID&log=true``: what ``jobd logs -f``
follows), and the registry that lets a stopping daemon end every open stream at once."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from anyio import CancelScope
from fastapi import FastAPI, Query, Response
from starlette.types import Receive, Scope, Send

from jobd.core.errors import NotFound, ValidationError
from jobd.core.events import JobEvent
from jobd.service.api.limits import MAX_ID
from jobd.service.api.shapes import iso_times
from jobd.service.authz import VIEWER

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from jobd.engine import Engine


class EventStreams:
    """The open event streams of one app, so a stopping daemon can end them at once.

    An SSE response never completes by itself, and an ASGI server that is
    shutting down waits for open responses; :func:`end_event_streams` ends
    them so shutdown does not sit out the server's grace period.
    """

    def __init__(self) -> None:
        self._scopes: set[CancelScope] = set()
        self.closed = False

    def close_all(self) -> None:
        """End every open stream and refuse new ones (call on the event loop)."""
        self.closed = True
        for scope in list(self._scopes):
            scope.cancel()

    @contextlib.contextmanager
    def track(self) -> Iterator[CancelScope]:
        with CancelScope() as scope:
            if self.closed:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)


def end_event_streams(app: FastAPI) -> None:
    """End the app's open ``/v1/events`` streams cleanly (the daemon calls this on shutdown)."""
    streams: EventStreams = app.state.event_streams
    streams.close_all()


class EventStreamResponse(Response):
    """``text/event-stream`` of committed events, written straight to ASGI.

    Subscribes *before* sending the headers, so a client that has the headers
    misses nothing that happens afterwards. Ends when the client disconnects
    or the engine closes the subscription (shutdown, slow reader dropped).
    Raw ASGI rather than an async generator: a generator cannot safely yield
    from inside the cancel scopes the keep-alive timer needs.
    """

    media_type = "text/event-stream"

    def __init__(
        self, engine: Engine, job_id: int | None, keepalive: float, streams: EventStreams
    ) -> None:
        super().__init__(status_code=200)
        self._engine, self._job_id, self._keepalive = engine, job_id, keepalive
        self._streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The client going away mid-write is an ordinary end for a stream, not an error.
        with contextlib.suppress(OSError):
            await self._stream(receive, send)

    def _subscribe(self) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[JobEvent]]:
        return self._engine.subscribe()

    async def _stream(self, receive: Receive, send: Send) -> None:
        async with self._subscribe() as events:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await self._chunk(send, b": connected\n\n")
            with self._streams.track():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                    await self._pump(events, send)
                    tg.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, events: MemoryObjectReceiveStream[JobEvent], send: Send) -> None:
        while True:
            event: JobEvent | None = None
            with anyio.move_on_after(self._keepalive):
                try:
                    event = await events.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
            if event is None:
                await self._chunk(send, b": keepalive\n\n")
            elif self._job_id is None or event.job_id == self._job_id:
                await self._chunk(send, sse_frame(event))

    @staticmethod
    async def _chunk(send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})


class LogStreamResponse(EventStreamResponse):
    """``?job=ID&log=true&after=SEQ``: the job's events, and its log lines as events of
    ``kind: "log"`` (``step``; ``data``: ``seq``, ``level``, ``message``), first those
    with ``seq > after`` already written, then each new one.

    A line is on the stream only once committed (it has its ``seq`` then): each one
    written wakes the stream with a marker, which flushes the store and reads what is
    new; so does every event of the job (in a cluster, a job running on another node
    sends its markers once its lines are committed: :mod:`jobd.engine.relay`). Lines come before
    the events that were waiting with them, so the state event that finishes a job
    comes after every line the job wrote.
    """

    def __init__(
        self, engine: Engine, job_id: int, after: int, keepalive: float, streams: EventStreams
    ) -> None:
        super().__init__(engine, job_id, keepalive, streams)
        self._log_job, self._after = job_id, after

    def _subscribe(self) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[JobEvent]]:
        return self._engine.subscribe(log_of=self._log_job)

    async def _pump(self, events: MemoryObjectReceiveStream[JobEvent], send: Send) -> None:
        await self._send_lines(send)  # those already written (and any still in flight)
        async for waiting in _batches(events, self._keepalive):
            if not waiting:
                await self._chunk(send, b": keepalive\n\n")
                continue
            mine = [event for event in waiting if event.job_id == self._log_job]
            if mine:  # a line's marker; or an event, after which lines another node wrote
                await self._send_lines(send)
            for event in mine:
                if event.kind != "log":
                    await self._chunk(send, sse_frame(event))

    async def _send_lines(self, send: Send) -> None:
        try:
            lines = await self._engine.committed_log(self._log_job, self._after)
        except NotFound:  # deleted (its "deleted" event follows), and its log with it
            return
        for line in lines:
            self._after = max(self._after, int(line["seq"]))
            await self._chunk(send, sse_frame(log_event(self._log_job, line)))


async def _batches(
    events: MemoryObjectReceiveStream[JobEvent], keepalive: float
) -> AsyncIterator[list[JobEvent]]:
    """The events as they come, each with every one already waiting behind it (a burst of
    log lines is one read of the store); an empty list after ``keepalive`` s of quiet."""
    while True:
        waiting: list[JobEvent] = []
        with anyio.move_on_after(keepalive):
            try:
                waiting.append(await events.receive())
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
        while waiting:
            try:
                waiting.append(events.receive_nowait())
            except anyio.WouldBlock:
                break
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                yield waiting
                return
        yield waiting


def log_event(job_id: int, line: dict[str, Any]) -> JobEvent:
    """A stored log line (``{seq, at, step, level, message}``) as a ``kind="log"`` event."""
    data = {"seq": line["seq"], "level": line["level"], "message": line["message"]}
    return JobEvent(job_id, "log", line["at"], step=line["step"], data=data)


def sse_frame(event: JobEvent) -> bytes:
    """One SSE message: ``event: job`` and the event as JSON on one ``data:`` line."""
    data = json.dumps(iso_times(event.to_dict()), separators=(",", ":"))
    return f"event: job\ndata: {data}\n\n".encode()


async def _cancel_on_disconnect(receive: Receive, scope: CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def add_event_routes(app: FastAPI, engine: Engine, sse_keepalive: float) -> None:
    """``GET /v1/events`` (``?job=ID`` for one job's), its streams in ``app.state``."""
    streams = app.state.event_streams = EventStreams()

    @app.get("/v1/events", dependencies=[VIEWER])
    async def events(
        job: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        log: Annotated[
            bool, Query(description="with job: the job's log lines too, as kind=log events")
        ] = False,
        after: Annotated[
            int, Query(ge=0, le=MAX_ID, description="with log: lines with seq > after")
        ] = 0,
    ) -> Response:
        if not log:
            return EventStreamResponse(engine, job, sse_keepalive, streams)
        if job is None:
            raise ValidationError("log=true follows one job's log: give job=ID", field="log")
        await engine.job_log(job, after, 1)  # no such job: 404 before the stream starts
        return LogStreamResponse(engine, job, after, sse_keepalive, streams)
