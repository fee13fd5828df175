"""Serve jobd's ASGI app inside jobd's task group: a Unix socket jobd binds itself, optional TCP.

Why not uvicorn's own ``uds=``: it chmods the socket to 0666 (world-writable),
never removes the file, and ``Server.serve()`` installs SIGINT/SIGTERM handlers
that would fight jobd's own signal receiver. So jobd binds the socket (stale
file check, umask, explicit chmod), hands uvicorn pre-bound sockets, disables
its signal handling, and unlinks the file on the way out.

Who is calling: on the Unix socket, :class:`_PeerAwareProtocol` asks the kernel
(``SO_PEERCRED``) once per accepted connection and hands the answer to the app
as ``scope["jobd.peer"]`` (:data:`PEER_SCOPE_KEY`), which nothing a client sends
can set. TCP is guarded by bearer tokens (:func:`jobd.config.access.load_tokens`),
which the app checks (:mod:`jobd.config.access`, ``jobd.service.api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import structlog
import uvicorn
from anyio.abc import TaskStatus
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jobd.config.access import PEER_SCOPE_KEY, peer_credentials
from jobd.core.errors import ConfigError, JobdError

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``sun_path`` is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_PATH = 107
#: How long open connections (an SSE stream, say) get to finish when the server stops.
SHUTDOWN_TIMEOUT = 2


class SocketInUse(JobdError):
    """Another process (probably another jobd) is accepting connections on the socket path."""

    code = "socket-in-use"

    def __init__(self, path: Path) -> None:
        super().__init__(f"another jobd is listening on {path}", {"path": str(path)})


# --- binding -----------------------------------------------------------------------------


def _check_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(None, "api.socket", f"{path} exists and is not a socket; not touching it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket", path=str(path))
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise SocketInUse(path)


@contextlib.contextmanager
def _umask(mask: int) -> Generator[None, None, None]:
    # The umask is process-wide: hold it only across the bind() call, so the socket
    # never exists, even for a moment, with wider permissions than asked for.
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """Bind (not yet listen) a stream socket at ``path`` with permissions ``mode``.

    Creates the parent directory; removes a stale socket file; raises
    :class:`SocketInUse` if a live one answers, :class:`ConfigError` when the path
    is too long or is some other kind of file.
    """
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ConfigError(None, "api.socket", f"{path} is longer than {MAX_UNIX_PATH} bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask(~mode & 0o777):
            sock.bind(str(path))
        # Explicit too: the umask cannot add bits, and a mode like 0o1660 needs chmod.
        os.chmod(path, mode)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    """Bind a TCP socket (IPv6 when ``host`` contains ``:``); SO_REUSEADDR as servers do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(None, "api.listen", f"{host}:{port} is already in use") from exc
        raise
    return sock


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8470"`` / ``"[::1]:8470"`` → ``(host, port)``; ConfigError if malformed."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(None, "api.listen", f"expected HOST:PORT, got {text!r}")
    return host, int(port_text)


def _inode(path: Path) -> int:
    return path.lstat().st_ino


def _unlink_if_ours(path: Path, inode: int) -> None:
    """Remove the socket file only if it is still the one we bound (not a successor's)."""
    try:
        if path.lstat().st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass


# --- who is at the other end ----------------------------------------------------------------


class _PeerAwareProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, telling the app who the Unix socket peer is.

    The kernel's answer (``SO_PEERCRED``, taken when the connection is
    accepted) goes into every request's scope of this connection, as uvicorn makes
    the scope (no coroutine wrapped around the app: one frame less per request). A Unix
    connection whose peer cannot be told is closed: fail closed, never guess.
    TCP connections pass through untouched (tokens say who they are).
    """

    _peer: object = None
    _has_peer = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return
        try:
            peer = peer_credentials(sock)
        except OSError as exc:
            log.warning("closing a connection whose peer the kernel cannot name", error=str(exc))
            transport.close()
            return
        self._peer, self._has_peer = peer, True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._has_peer:
            self.scope[PEER_SCOPE_KEY] = self._peer  # type: ignore[literal-required]


# --- the server ----------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers, telling us when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # jobd's own signal receiver decides what SIGTERM/SIGINT mean (uvicorn >= 0.29).
        yield

    def install_signal_handlers(self) -> None:
        """Same, for uvicorn versions before ``capture_signals`` existed."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


def _server(app: ASGIApp) -> _EmbeddedServer:
    config = uvicorn.Config(
        app,
        lifespan="off",  # jobd's task group owns start-up and shut-down
        log_config=None,  # jobd.logging already shaped the stdlib loggers
        # A log line per request costs CPU on the hot path: only when someone will see it
        # (debug). uvicorn detaches uvicorn.access when this is off; jobd.logging re-attaches it.
        access_log=logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO),
        proxy_headers=False,
        server_header=False,
        http=_PeerAwareProtocol,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
    )
    return _EmbeddedServer(config)


async def _run_shielded(server: _EmbeddedServer, sockets: list[socket.socket]) -> None:
    # Shielded so that cancelling jobd's task group lets uvicorn's own shutdown
    # run (close listeners, end connections); serve() asks it to stop via should_exit.
    with anyio.CancelScope(shield=True):
        await server.serve(sockets=sockets)


def _call_quietly(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:  # a failing hook must not keep the server (and jobd) from stopping
        log.exception("API stop hook failed")


def _describe(unix_socket: Path | None, tcp: tuple[str, int] | None) -> dict[str, str]:
    where = {}
    if unix_socket is not None:
        where["socket"] = str(unix_socket)
    if tcp is not None:
        where["tcp"] = f"{tcp[0]}:{tcp[1]}"
    return where


async def serve(
    app: ASGIApp,
    *,
    unix_socket: Path | None,
    socket_mode: int = 0o660,
    tcp: tuple[str, int] | None = None,
    on_stop: Callable[[], None] | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``unix_socket`` and/or ``tcp`` until cancelled.

    Start it with ``await tg.start(serve, app, ...)``: ``started()`` is signalled
    once the listeners accept connections. Raises :class:`SocketInUse` or
    :class:`ConfigError` before that if a listener cannot be bound. On
    cancellation it calls ``on_stop()`` (e.g. to end the app's never-ending
    event streams), stops accepting, gives open requests up to
    ``SHUTDOWN_TIMEOUT`` s, closes the sockets and removes the socket file.
    """
    if unix_socket is None and tcp is None:
        raise ValueError("serve() needs a Unix socket, a TCP address or both")
    sockets: list[socket.socket] = []
    inode: int | None = None
    try:
        if unix_socket is not None:
            sockets.append(bind_unix_socket(unix_socket, socket_mode))
            inode = _inode(unix_socket)
        if tcp is not None:
            sockets.append(bind_tcp(*tcp))
        server = _server(app)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_run_shielded, server, sockets)
            try:
                await server.listening.wait()
                log.info("api listening", **_describe(unix_socket, tcp))
                task_status.started()
                await anyio.sleep_forever()
            finally:
                if on_stop is not None:
                    _call_quietly(on_stop)
                server.should_exit = True
    finally:
        for sock in sockets:
            sock.close()
        if unix_socket is not None and inode is not None:
            _unlink_if_ours(unix_socket, inode)
