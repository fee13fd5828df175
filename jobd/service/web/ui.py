"""``jobd ui``: the web monitor on 127.0.0.1 for a daemon reached through its Unix socket.

A browser cannot open a Unix socket, so this command listens on
``127.0.0.1:PORT`` and relays every request to the socket. The daemon then
sees the user who ran ``jobd ui`` (peer credentials), with that user's role.

Anyone on the host can connect to a loopback port, so the relay is guarded:

1. It prints ``http://127.0.0.1:PORT/#secret=S``: ``S`` is random (256 bits)
   and works **once**. It sits in the URL's fragment, which a browser never
   sends to a server (no access log, no ``Referer`` holds it).
2. The page trades it at ``POST /ui/session`` for a session token (another
   256 random bits), keeps that in the tab's ``sessionStorage`` and sends it
   as ``Authorization: Bearer`` on every API call, the way it sends a
   daemon's token over TCP. The fragment is removed from the address bar.
   A second redemption of the same secret is refused.
3. Every API path needs the session token; only the page's own files (they
   hold no data) are relayed without it. The token is a header, never a
   cookie, so another site cannot make the browser use it (no CSRF).
4. The ``Host`` header must name this listener (``127.0.0.1:PORT`` or
   ``localhost:PORT``): a DNS-rebinding page on another name gets 421.
5. The relay strips the browser's ``Authorization`` before it reaches the
   daemon, and stops when the command stops (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from jobd.service.web import SECURITY_HEADERS, is_public_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Largest request body relayed (a batch of 10,000 jobs fits).
MAX_RELAY_BODY = 32 * 1024 * 1024
#: Response headers that belong to one connection, not to the message.
_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length"})
_SESSION_PATH = "/ui/session"


class UiRelay:
    """The ASGI app of ``jobd ui``: the one-time secret, session tokens, and the relay."""

    def __init__(self, socket_path: Path, port: int, secret: str | None = None) -> None:
        self.socket_path = socket_path
        self.port = port
        self._secret: str | None = secret or secrets.token_urlsafe(32)
        self._sessions: list[bytes] = []
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://jobd",
            timeout=httpx.Timeout(120.0, read=None),
        )

    @property
    def url(self) -> str:
        """The address to open (its secret works once)."""
        return f"http://127.0.0.1:{self.port}/#secret={self._secret}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not self._host_ok(scope):
            await _answer(send, 421, "wrong-host", "this jobd ui answers only 127.0.0.1/localhost")
            return
        path = scope["path"]
        if path == _SESSION_PATH:
            await self._redeem(scope, receive, send)
        elif is_public_path(path):
            await self._relay(scope, receive, send)
        elif not self._session_ok(scope):
            await _answer(send, 401, "unauthorized", "open the URL that jobd ui printed")
        else:
            await self._relay(scope, receive, send)

    def _host_ok(self, scope: Scope) -> bool:
        host = _header(scope, b"host")
        return host in {f"127.0.0.1:{self.port}".encode(), f"localhost:{self.port}".encode()}

    def _session_ok(self, scope: Scope) -> bool:
        scheme, _, value = _header(scope, b"authorization").partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        # Every comparison made, so the answer's timing says nothing about which one matched.
        return any([hmac.compare_digest(value.strip(), s) for s in self._sessions])

    async def _redeem(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /ui/session {"secret"}`` → ``{"token"}``, once."""
        body = await _read_body(receive, 4096)
        try:
            offered = str(json.loads(body or b"{}").get("secret", ""))
        except (ValueError, AttributeError):
            offered = ""
        origin = _header(scope, b"origin")
        own = {f"http://127.0.0.1:{self.port}".encode(), f"http://localhost:{self.port}".encode()}
        if scope["method"] != "POST" or (origin and origin not in own):
            await _answer(send, 403, "forbidden", "redeem the secret from the page itself")
            return
        secret = self._secret
        if not secret or not hmac.compare_digest(offered.encode(), secret.encode()):
            await _answer(send, 401, "unauthorized", "that secret is wrong or was used already")
            return
        self._secret = None  # once: no await between the check and this line
        token = secrets.token_urlsafe(32)
        self._sessions.append(token.encode())
        await _send_json(send, 200, {"token": token})

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_RELAY_BODY)
        if body is None:
            await _answer(send, 413, "too-large", f"request body over {MAX_RELAY_BODY} bytes")
            return
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k not in {b"authorization", b"host", b"cookie", b"content-length"}
        ]
        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        request = self._client.build_request(scope["method"], target, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            await _answer(send, 502, "unreachable", f"jobd does not answer on its socket: {exc}")
            return
        try:
            await self._stream(response, receive, send)
        finally:
            await response.aclose()

    async def _stream(self, response: httpx.Response, receive: Receive, send: Send) -> None:
        """Pass the answer on as it comes (an event stream never ends by itself)."""
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP]
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            with contextlib.suppress(httpx.HTTPError, OSError):
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            tg.cancel_scope.cancel()
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value)
    return b""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _send_json(send: Send, status: int, value: dict[str, Any]) -> None:
    body = json.dumps(value).encode()
    headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
    headers += [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    await _send_json(send, status, {"error": {"code": code, "message": message, "details": {}}})


def bind_loopback(port: int) -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1 (``port`` 0: any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def run_ui(socket_path: Path, port: int = 0) -> int:
    """Serve the relay until Ctrl-C; prints the one-time URL first. Returns the exit status."""
    try:
        sock = bind_loopback(port)
    except OSError as exc:
        print(f"jobd: cannot listen on 127.0.0.1:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    relay = UiRelay(socket_path, sock.getsockname()[1])
    print(f"jobd ui: open {relay.url}", flush=True)
    print("(the secret in this address works once, for one tab; Ctrl-C stops jobd ui)", flush=True)
    config = uvicorn.Config(
        relay,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=1,
    )

    async def serve() -> None:
        try:
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            await relay.aclose()

    anyio.run(serve)
    return 0
