"""The API's own ASGI middlewares: the catch-all (a bug answers 500 ``internal``) and the
body limit (413 before anything parses a body)."""

from __future__ import annotations

import json

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobd.service.api.limits import MAX_BODY
from jobd.service.api.shapes import error_body

log = structlog.get_logger("jobd.api")


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the error shape straight from ASGI (before the app ran)."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CatchAllMiddleware:
    """Any exception that escapes a route is a bug: log it, answer 500 ``internal``.

    Starlette's own 500 handler re-raises after answering (so servers log it
    twice and test transports blow up); this one answers and stops.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unhandled error in API", method=scope.get("method"), path=scope.get("path")
            )
            if not started:
                await send_error(
                    send, 500, "internal", "internal error (a bug in jobd; see the daemon log)"
                )


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, by Content-Length and by counting.

    The body is read here (at most ``limit`` bytes are ever buffered) and
    replayed to the app, so a client that lies about or omits Content-Length
    is still cut off before anything parses it.
    """

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY, limits: dict[str, int] | None = None
    ) -> None:
        """``limits``: larger caps for some paths (the batch route)."""
        self.app = app
        self.limit = limit
        self.limits = limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.limit)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(send, limit)
            return
        body = await self._read(receive, limit)
        if body is None:
            await self._too_large(send, limit)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # disconnected: the app will see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Send, limit: int) -> None:
        await send_error(
            send,
            413,
            "too-large",
            f"request body larger than {limit} bytes",
            [(b"connection", b"close")],
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
