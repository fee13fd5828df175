"""jobd.service.httpserver: the Unix socket jobd binds itself, TCP with a token, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest

from jobd.core.errors import ConfigError
from jobd.service import httpserver
from jobd.service.httpserver import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """A minimal ASGI app: echo the path; ``/stream`` never finishes (like SSE)."""
    assert scope["type"] == "http"
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: hi\n\n", "more_body": True})
        await anyio.sleep_forever()
    body = json.dumps({"path": scope["path"]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # tmp_path can exceed the 107-byte limit of a socket path: use a short directory.
    path = Path(tempfile.mkdtemp(prefix="jobd-"))
    try:
        yield path
    finally:
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(**kwargs: object) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(httpserver.serve, app, **kwargs))  # type: ignore[arg-type]
        yield
        tg.cancel_scope.cancel()


def uds_client(path: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(path)), base_url="http://jobd"
    )


async def test_serves_on_a_private_socket_and_removes_it(sock_dir: Path) -> None:
    path = sock_dir / "run" / "jobd.sock"  # the parent is created
    sigterm_before = signal.getsignal(signal.SIGTERM)
    with anyio.fail_after(20):
        async with serving(unix_socket=path, socket_mode=0o660):
            assert stat.S_ISSOCK(path.lstat().st_mode)
            assert stat.S_IMODE(path.lstat().st_mode) == 0o660
            # uvicorn's own handlers were not installed
            assert signal.getsignal(signal.SIGTERM) == sigterm_before
            async with uds_client(path) as client:
                answer = await client.get("/v1/health")
            assert answer.status_code == 200 and answer.json() == {"path": "/v1/health"}
    assert not path.exists()


async def test_socket_mode_is_applied_whatever_the_umask(sock_dir: Path) -> None:
    path = sock_dir / "jobd.sock"
    old = os.umask(0o077)
    try:
        with anyio.fail_after(20):
            async with serving(unix_socket=path, socket_mode=0o666):
                assert stat.S_IMODE(path.lstat().st_mode) == 0o666
    finally:
        os.umask(old)
    assert os.umask(old) == old  # the umask was restored


async def test_a_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "jobd.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens: what a crashed daemon leaves
    with anyio.fail_after(20):
        async with serving(unix_socket=path, socket_mode=0o600), uds_client(path) as client:
            assert (await client.get("/x")).status_code == 200
    assert not path.exists()


async def test_a_live_socket_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "jobd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        with (
            anyio.fail_after(20),
            pytest.raises(httpserver.SocketInUse, match="another jobd is listening on"),
        ):
            await httpserver.serve(app, unix_socket=path, socket_mode=0o660)
        assert path.exists()  # the other daemon's socket is untouched


async def test_a_regular_file_is_never_removed(sock_dir: Path) -> None:
    path = sock_dir / "jobd.sock"
    path.write_text("precious")
    with anyio.fail_after(20), pytest.raises(ConfigError, match="not a socket"):
        await httpserver.serve(app, unix_socket=path, socket_mode=0o660)
    assert path.read_text() == "precious"


def test_a_too_long_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="longer than"):
        httpserver.bind_unix_socket(tmp_path / ("x" * 120) / "jobd.sock", 0o660)


async def test_the_socket_of_a_successor_is_not_removed(sock_dir: Path) -> None:
    path = sock_dir / "jobd.sock"
    with anyio.fail_after(20):
        async with serving(unix_socket=path, socket_mode=0o660):
            path.unlink()  # e.g. an operator cleaned up, and another process bound anew
            successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            successor.bind(str(path))
        assert path.exists()
        successor.close()


async def test_stop_does_not_wait_forever_for_a_stream(sock_dir: Path) -> None:
    path = sock_dir / "jobd.sock"
    with anyio.fail_after(20):
        async with anyio.create_task_group() as outer:
            await outer.start(partial(httpserver.serve, app, unix_socket=path, socket_mode=0o600))
            async with uds_client(path) as client, client.stream("GET", "/stream") as stream:
                async for chunk in stream.aiter_text():
                    assert "data: hi" in chunk
                    break
                outer.cancel_scope.cancel()  # server stops while the stream is open
    assert not path.exists()


async def test_serves_unix_and_tcp_together(sock_dir: Path) -> None:
    path, port = sock_dir / "jobd.sock", free_port()
    with anyio.fail_after(20):
        async with serving(unix_socket=path, socket_mode=0o600, tcp=("127.0.0.1", port)):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                over_tcp = await client.get("/tcp")
            async with uds_client(path) as client:
                over_unix = await client.get("/unix")
    assert over_tcp.json() == {"path": "/tcp"} and over_unix.json() == {"path": "/unix"}
    assert not path.exists()
    with socket.socket() as again:  # the port was released
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_tcp_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="already in use"):
            httpserver.bind_tcp("127.0.0.1", port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8470", ("127.0.0.1", 8470)),
        ("[::1]:8470", ("::1", 8470)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert httpserver.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8470", ":8470", "host:", "host:port", "host:70000"])
def test_parse_listen_refuses_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        httpserver.parse_listen(text)


async def test_on_stop_runs_when_the_server_stops_even_if_it_raises(sock_dir: Path) -> None:
    calls: list[str] = []

    def hook() -> None:
        calls.append("stopped")
        raise RuntimeError("hook broke")

    path = sock_dir / "jobd.sock"
    with anyio.fail_after(20):
        async with serving(unix_socket=path, socket_mode=0o600, on_stop=hook):
            assert calls == []
    assert calls == ["stopped"] and not path.exists()
