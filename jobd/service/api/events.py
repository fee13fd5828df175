"""``GET /v1/events``: the Server-Sent Events stream of committed job events (SPEC §7),
and the registry that lets a stopping daemon end every open stream at once."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import anyio
from anyio import CancelScope
from fastapi import FastAPI, Query, Response
from starlette.types import Receive, Scope, Send

from jobd.service.api.limits import MAX_ID
from jobd.service.api.shapes import iso_times
from jobd.service.authz import VIEWER

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from jobd.core.events import JobEvent
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

    async def _stream(self, receive: Receive, send: Send) -> None:
        async with self._engine.subscribe() as events:
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
    ) -> Response:
        return EventStreamResponse(engine, job, sse_keepalive, streams)
