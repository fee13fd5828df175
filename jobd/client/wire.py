"""A small HTTP/1.1 client on the standard library's sockets: what the CLI talks through.

Why not httpx (or ``http.client``): a CLI command is one short process, and
its start-up is what a person waits for. ``import httpx`` alone costs ~64 ms
here (``http.client`` ~25 ms, most of it the ``email`` package); this module
costs well under one. It speaks just what jobd's API needs: one kept-alive
connection over a Unix socket or TCP (TLS for ``https://``), bodies by
``Content-Length`` or chunked, and a streamed body read chunk by chunk for
server-sent events.

Every failure to connect, send or read raises :class:`TransportError`; the
caller (``jobd.client.remote``) turns it into "cannot reach jobd".

A Unix socket is opened with ``_socket``, the C module under :mod:`socket`:
importing ``socket`` itself builds its ``IntEnum`` classes (``AddressFamily``,
``SocketKind``, ...), about a tenth of a client command's start-up. TCP
(``--url``) imports :mod:`socket` for ``create_connection`` and TLS.
"""

from __future__ import annotations

import _socket
from io import BufferedReader, RawIOBase

# Annotations only: importing typing, or collections.abc (the whole collections package),
# costs start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

#: Largest status line or header line accepted (a daemon never sends more).
MAX_LINE = 65536


class TransportError(Exception):
    """The connection could not be made, or broke before a whole answer arrived."""


# Plain classes, no dataclasses, typing or pathlib: each costs milliseconds of start-up.


class Response:
    """A status, lower-cased headers and (for :meth:`Connection.request`) the whole body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self.body = b""


class Target:
    """Where to connect: a Unix socket path, or a host and port (TLS for ``https``)."""

    __slots__ = ("host", "port", "tls", "unix")

    def __init__(
        self, unix: str | None = None, host: str = "localhost", port: int = 80, tls: bool = False
    ) -> None:
        self.unix, self.host, self.port, self.tls = unix, host, port, tls

    @classmethod
    def from_url(cls, url: str) -> Target:
        """``http://host:port`` or ``https://host[:port]``; a path in the URL is ignored."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise TransportError(f"not an http:// or https:// URL: {url!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError:
            raise TransportError(f"bad port in URL {url!r}") from None
        return cls(host=parts.hostname, port=port, tls=tls)


class Connection:
    """One HTTP/1.1 connection, opened on first use and re-opened when the server closed it.

    Not thread-safe: use one per thread (the CLI's ``watch`` does).
    """

    def __init__(self, target: Target, *, timeout: float, connect_timeout: float) -> None:
        self.target = target
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._sock: _socket.socket | None = None
        self._file: BufferedReader | None = None

    def close(self) -> None:
        """Close, waking a thread blocked reading this connection (a followed stream)."""
        if self._sock is not None:
            try:  # noqa: SIM105 (not contextlib.suppress: importing contextlib costs start-up)
                self._sock.shutdown(_socket.SHUT_RDWR)
            except OSError:  # not connected (any more)
                pass
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def _connect(self) -> tuple[_socket.socket, BufferedReader]:
        if self._sock is not None and self._file is not None:
            return self._sock, self._file
        try:
            sock = self._open()
        except OSError as exc:
            raise TransportError(_reason(exc)) from None
        sock.settimeout(self.timeout)
        self._sock, self._file = sock, BufferedReader(_SocketReader(sock))
        return sock, self._file

    def _open(self) -> _socket.socket:
        target = self.target
        if target.unix is not None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(target.unix)
            except OSError:
                sock.close()
                raise
            return sock
        import socket

        sock = socket.create_connection((target.host, target.port), timeout=self.connect_timeout)
        if target.tls:
            import ssl

            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=target.host)
        return sock

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read the whole answer."""
        response = self._exchange(method, path, headers, body, timeout)
        assert self._file is not None
        try:
            response.body = b"".join(_body_chunks(self._file, response))
        except TransportError:
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def stream(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[Response, Iterator[bytes]]:
        """Send one request; the status and headers, and an iterator of the body's chunks.

        The connection serves nothing else afterwards (it is closed when the
        iterator ends or is dropped).
        """
        response = self._exchange(method, path, headers, None, timeout)
        assert self._file is not None
        return response, self._chunks_then_close(_body_chunks(self._file, response))

    def _chunks_then_close(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        finally:
            self.close()

    def _exchange(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        timeout: float | None,
    ) -> Response:
        """Send, and read the status and headers. A kept-alive connection the server has
        closed in the meantime answers nothing at all: then open a new one, once."""
        data = self._encode(method, path, headers, body)
        for attempt in ("reused", "new") if self._sock is not None else ("new",):
            try:
                return self._send_and_read_head(data, timeout)
            except _ClosedBeforeAnswer as exc:
                self.close()
                if attempt == "new":
                    raise TransportError(str(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_and_read_head(self, data: bytes, timeout: float | None) -> Response:
        sock, file = self._connect()
        sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            sock.sendall(data)
            status_line = file.readline(MAX_LINE)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClosedBeforeAnswer(_reason(exc)) from None
        except OSError as exc:
            self.close()
            raise TransportError(_reason(exc)) from None
        if not status_line:
            raise _ClosedBeforeAnswer("the server closed the connection without answering")
        try:
            return _read_head(status_line, file)
        except OSError as exc:
            self.close()
            raise TransportError(_reason(exc)) from None

    def _encode(
        self, method: str, path: str, headers: Mapping[str, str] | None, body: bytes | None
    ) -> bytes:
        host = "jobd" if self.target.unix is not None else f"{self.target.host}:{self.target.port}"
        lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        if body is not None or method in {"POST", "PUT", "PATCH"}:
            lines.append(f"content-length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class _SocketReader(RawIOBase):
    """The socket as a raw stream for :class:`BufferedReader` (what ``socket.makefile("rb")``
    builds, for the ``_socket`` objects that have no ``makefile``). Closing it leaves the
    socket to :meth:`Connection.close`."""

    def __init__(self, sock: _socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)


class _ClosedBeforeAnswer(Exception):
    """The server closed the connection before the first byte of an answer."""


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


def _read_head(status_line: bytes, file: BufferedReader) -> Response:
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise TransportError(f"not an HTTP answer: {status_line[:80]!r}")
    response = Response(int(parts[1]))
    while True:
        line = file.readline(MAX_LINE)
        if not line:
            raise TransportError("the connection closed in the middle of the headers")
        if line in (b"\r\n", b"\n"):
            return response
        key, _, value = line.decode("latin-1").partition(":")
        response.headers[key.strip().lower()] = value.strip()


def _body_chunks(file: BufferedReader, response: Response) -> Iterator[bytes]:
    """The body as it arrives: by ``Content-Length``, chunked, or up to the end of the stream."""
    try:
        if response.status in (204, 304) or 100 <= response.status < 200:
            return
        if "chunked" in response.headers.get("transfer-encoding", "").lower():
            yield from _chunked(file)
        elif "content-length" in response.headers:
            yield _read_exactly(file, int(response.headers["content-length"]))
        else:
            while chunk := file.read1(65536):
                yield chunk
    except OSError as exc:
        raise TransportError(_reason(exc)) from None


def _chunked(file: BufferedReader) -> Iterator[bytes]:
    while True:
        size_line = file.readline(MAX_LINE)
        if not size_line:
            raise TransportError("the connection closed in the middle of the answer")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while file.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers: none expected, skipped
            return
        yield _read_exactly(file, size)
        file.readline(MAX_LINE)  # the CRLF after each chunk


def _read_exactly(file: BufferedReader, size: int) -> bytes:
    data = file.read(size)
    if len(data) < size:
        raise TransportError("the connection closed in the middle of the answer")
    return data


def iter_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Decoded lines (without their ``\\n`` or ``\\r\\n``) from a chunked byte stream."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", errors="replace")


#: Characters a query value keeps as they are (RFC 3986 "unreserved").
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str, safe: str = "") -> str:
    """Percent-encode ``text`` as UTF-8 (what ``urllib.parse.quote`` does, without importing
    it and the ``ipaddress`` module it pulls in)."""
    keep = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


def query(params: Mapping[str, object]) -> str:
    """``a=1&b=x&b=y``: a list value repeats its key (``urlencode(doseq=True)``)."""
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append(f"{quote(str(key))}={quote(str(item))}")
    return "&".join(pairs)
