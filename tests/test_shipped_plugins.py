"""The actions shipped in plugins/: exec, http, copy, move, checksum, sleep, fail."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobd.core.errors import ActionError
from jobd.plugin.action import Action, ActionContext
from jobd.plugin.host import PluginHost


@pytest.fixture(scope="module")
def actions() -> dict[str, Action]:
    """The shipped actions, found the way the daemon finds them (builtin discovery)."""
    host = PluginHost([], builtin=True, entry_points=False)
    host.load()
    assert all(info.source == "builtin" and info.error is None for info in host.infos())
    return dict(host.actions)


Progress = list[tuple[float, str | None]]


def make_ctx(
    workdir: Path, roots: Sequence[Path] = (), progress: Progress | None = None
) -> ActionContext:
    async def record(pct: float, message: str | None) -> None:
        if progress is not None:
            progress.append((pct, message))

    return ActionContext(
        job_id=1,
        job={"id": 1},
        step="step",
        attempt=1,
        params={},
        outputs={},
        assets=(),
        resources=(),
        workdir=workdir,
        log=structlog.get_logger("test"),
        kill_grace=1.0,
        file_roots=roots,
        progress_cb=record,
    )


async def run(actions: dict[str, Action], name: str, ctx: ActionContext, **params: Any) -> Any:
    return await actions[name].run(ctx, **params)


# --------------------------------------------------------------------------- exec


async def test_exec_returns_exit_code_and_stdout(
    actions: dict[str, Action], tmp_path: Path
) -> None:
    out = await run(actions, "exec", make_ctx(tmp_path), argv=["echo", "hello", "world"])
    assert out == {"exit_code": 0, "stdout": "hello world\n"}


async def test_exec_passes_env_and_cwd(actions: dict[str, Action], tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    argv = ["sh", "-c", 'printf "%s %s" "$GREETING" "$(pwd)"']
    out = await run(
        actions,
        "exec",
        make_ctx(tmp_path),
        argv=argv,
        env={"GREETING": "hi", "COUNT": 3},
        cwd=str(tmp_path / "sub"),
    )
    assert out["stdout"] == f"hi {tmp_path / 'sub'}"


async def test_exec_runs_in_the_workdir_by_default(
    actions: dict[str, Action], tmp_path: Path
) -> None:
    out = await run(actions, "exec", make_ctx(tmp_path), argv=["pwd"])
    assert out["stdout"].strip() == str(tmp_path)


async def test_exec_non_zero_exit_fails(actions: dict[str, Action], tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="exited with 3: oops"):
        await run(actions, "exec", make_ctx(tmp_path), argv=["sh", "-c", "echo oops >&2; exit 3"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "'argv' must be a non-empty list"),
        ({"argv": "echo hi"}, "'argv' must be a non-empty list"),
        ({"argv": []}, "'argv' must be a non-empty list"),
        ({"argv": ["echo", 1]}, "every item of 'argv' must be a string"),
        ({"argv": ["true"], "env": ["A=1"]}, "'env' must be a map"),
        ({"argv": ["true"], "cwd": 5}, "'cwd' must be a path"),
    ],
)
async def test_exec_refuses_bad_params(
    actions: dict[str, Action], tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ActionError, match=message):
        await run(actions, "exec", make_ctx(tmp_path), **params)


# --------------------------------------------------------------------------- http


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/json": (200, "application/json", json.dumps({"ok": True}).encode()),
            "/text": (200, "text/plain; charset=utf-8", b"plain text"),
            "/big": (200, "application/json", b"[" + b"1," * 60_000 + b"1]"),
            "/fail": (503, "text/plain", b"service down"),
        }
        self._answer(*routes.get(self.path, (404, "text/plain", b"no such route")))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        echo = {"method": "POST", "json": body, "header": self.headers.get("X-Test")}
        self._answer(201, "application/json", json.dumps(echo).encode())

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A tiny HTTP server on the loopback interface, in a thread, for this module's tests."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


async def test_http_get_parses_json(
    actions: dict[str, Action], server: str, tmp_path: Path
) -> None:
    out = await run(actions, "http", make_ctx(tmp_path), url=f"{server}/json")
    assert out == {"status": 200, "body": {"ok": True}}


async def test_http_text_body(actions: dict[str, Action], server: str, tmp_path: Path) -> None:
    out = await run(actions, "http", make_ctx(tmp_path), url=f"{server}/text", timeout="5")
    assert out == {"status": 200, "body": "plain text"}


async def test_http_post_sends_json_and_headers(
    actions: dict[str, Action], server: str, tmp_path: Path
) -> None:
    out = await run(
        actions,
        "http",
        make_ctx(tmp_path),
        url=f"{server}/echo",
        method="post",
        json={"asset": "A1"},
        headers={"X-Test": "yes"},
    )
    assert out == {
        "status": 201,
        "body": {"method": "POST", "json": {"asset": "A1"}, "header": "yes"},
    }


async def test_http_long_body_is_truncated_text(
    actions: dict[str, Action], server: str, tmp_path: Path
) -> None:
    out = await run(actions, "http", make_ctx(tmp_path), url=f"{server}/big")
    assert out["status"] == 200
    assert isinstance(out["body"], str) and len(out["body"]) == 64 * 1024
    assert out["body"].startswith("[1,1,")


async def test_http_non_2xx_fails(actions: dict[str, Action], server: str, tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="answered 503: service down") as caught:
        await run(actions, "http", make_ctx(tmp_path), url=f"{server}/fail")
    assert caught.value.details["status"] == 503


async def test_http_unreachable_fails(actions: dict[str, Action], tmp_path: Path) -> None:
    # Port 1 on the loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(ActionError, match="failed"):
        await run(actions, "http", make_ctx(tmp_path), url="http://127.0.0.1:1/")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "'url' must be an http"),
        ({"url": "ftp://example.org/x"}, "'url' must be an http"),
        ({"url": "http://127.0.0.1:1/", "method": "BREW"}, "'method' must be one of"),
        ({"url": "http://127.0.0.1:1/", "timeout": "soon"}, "'timeout' must be a number"),
        ({"url": "http://127.0.0.1:1/", "timeout": 0}, "'timeout' must be positive"),
        ({"url": "http://127.0.0.1:1/", "headers": ["X: 1"]}, "'headers' must be a map"),
    ],
)
async def test_http_refuses_bad_params(
    actions: dict[str, Action], tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ActionError, match=message):
        await run(actions, "http", make_ctx(tmp_path), **params)


# --------------------------------------------------------------------------- copy / move


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a file root with one file, and a folder beside it that is off limits."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "clip.mxf").write_bytes(b"media" * 1000)
    (outside / "secret").write_bytes(b"secret")
    return root, outside


async def test_copy_inside_the_root(actions: dict[str, Action], media: tuple[Path, Path]) -> None:
    root, _ = media
    out = await run(
        actions,
        "copy",
        make_ctx(root, [root]),
        source=str(root / "clip.mxf"),
        target=str(root / "new" / "copy.mxf"),
    )
    assert out == {"target": str(root / "new" / "copy.mxf"), "bytes": 5000}
    assert (root / "new" / "copy.mxf").read_bytes() == (root / "clip.mxf").read_bytes()


async def test_copy_into_a_directory_keeps_the_name(
    actions: dict[str, Action], media: tuple[Path, Path]
) -> None:
    root, _ = media
    (root / "archive").mkdir()
    out = await run(
        actions,
        "copy",
        make_ctx(root, [root]),
        source=str(root / "clip.mxf"),
        target=str(root / "archive"),
    )
    assert out["target"] == str(root / "archive" / "clip.mxf")


async def test_move_inside_the_root(actions: dict[str, Action], media: tuple[Path, Path]) -> None:
    root, _ = media
    out = await run(
        actions,
        "move",
        make_ctx(root, [root]),
        source=str(root / "clip.mxf"),
        target=str(root / "moved.mxf"),
    )
    assert out == {"target": str(root / "moved.mxf"), "bytes": 5000}
    assert not (root / "clip.mxf").exists()


@pytest.mark.parametrize("action", ["copy", "move"])
async def test_copy_and_move_refuse_traversal(
    actions: dict[str, Action], media: tuple[Path, Path], action: str
) -> None:
    root, outside = media
    ctx = make_ctx(root, [root])
    with pytest.raises(ActionError, match=r"'target'.* is outside the file roots"):
        await run(
            actions, action, ctx, source=str(root / "clip.mxf"), target=f"{root}/../outside/stolen"
        )
    with pytest.raises(ActionError, match=r"'source'.* is outside the file roots"):
        await run(
            actions, action, ctx, source=f"{root}/../outside/secret", target=str(root / "got-it")
        )
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (root / "clip.mxf").exists() and not (root / "got-it").exists()


@pytest.mark.parametrize("action", ["copy", "move"])
async def test_copy_and_move_refuse_symlinks_escaping_the_root(
    actions: dict[str, Action], media: tuple[Path, Path], action: str
) -> None:
    root, outside = media
    (root / "innocent.mxf").symlink_to(outside / "secret")
    (root / "drop").symlink_to(outside, target_is_directory=True)
    ctx = make_ctx(root, [root])
    with pytest.raises(ActionError, match=r"'source'.* is outside the file roots"):
        await run(actions, action, ctx, source=str(root / "innocent.mxf"), target=str(root / "x"))
    with pytest.raises(ActionError, match=r"'target'.* is outside the file roots"):
        await run(actions, action, ctx, source=str(root / "clip.mxf"), target=str(root / "drop"))
    with pytest.raises(ActionError, match=r"'target'.* is outside the file roots"):
        await run(
            actions,
            action,
            ctx,
            source=str(root / "clip.mxf"),
            target=str(root / "drop" / "clip.mxf"),
        )
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


async def test_copy_into_a_directory_refuses_an_escaping_entry(
    actions: dict[str, Action], media: tuple[Path, Path]
) -> None:
    """Target is a directory inside the root, but <dir>/<name> is a symlink leading out."""
    root, outside = media
    (root / "archive").mkdir()
    (root / "archive" / "clip.mxf").symlink_to(outside / "planted")
    with pytest.raises(ActionError, match="outside the file roots"):
        await run(
            actions,
            "copy",
            make_ctx(root, [root]),
            source=str(root / "clip.mxf"),
            target=str(root / "archive"),
        )
    assert not (outside / "planted").exists()


@pytest.mark.parametrize(
    ("source", "target", "roots", "message"),
    [
        ("clip.mxf", "{root}/x", True, "'source' must be an absolute path"),
        ("{root}/missing.mxf", "{root}/x", True, "is not an existing file"),
        ("{root}/clip.mxf", "{root}/clip.mxf", True, "the same file"),
        ("{root}/clip.mxf", "{root}/x", False, r"outside the file roots \(none configured\)"),
        (None, "{root}/x", True, "'source' must be a path"),
    ],
)
async def test_copy_refuses_bad_paths(
    actions: dict[str, Action],
    media: tuple[Path, Path],
    source: str | None,
    target: str,
    roots: bool,
    message: str,
) -> None:
    root, _ = media
    ctx = make_ctx(root, [root] if roots else [])
    with pytest.raises(ActionError, match=message):
        await run(
            actions,
            "copy",
            ctx,
            source=source and source.format(root=root),
            target=target.format(root=root),
        )


# --------------------------------------------------------------------------- checksum


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "SHA256"])
async def test_checksum_matches_hashlib(
    actions: dict[str, Action], tmp_path: Path, algorithm: str
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 123)  # more than two 1 MiB chunks
    (tmp_path / "clip.mxf").write_bytes(data)
    out = await run(
        actions,
        "checksum",
        make_ctx(tmp_path, [tmp_path]),
        path=str(tmp_path / "clip.mxf"),
        algorithm=algorithm,
    )
    name = algorithm.lower()
    assert out == {"algorithm": name, "digest": hashlib.new(name, data).hexdigest()}


async def test_checksum_defaults_to_sha256(actions: dict[str, Action], tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    out = await run(
        actions, "checksum", make_ctx(tmp_path, [tmp_path]), path=str(tmp_path / "empty")
    )
    assert out == {"algorithm": "sha256", "digest": hashlib.sha256(b"").hexdigest()}


async def test_checksum_refuses_bad_params(
    actions: dict[str, Action], media: tuple[Path, Path]
) -> None:
    root, outside = media
    (root / "link").symlink_to(outside / "secret")
    ctx = make_ctx(root, [root])
    with pytest.raises(ActionError, match="'algorithm' must be one of md5, sha1, sha256"):
        await run(actions, "checksum", ctx, path=str(root / "clip.mxf"), algorithm="crc32")
    with pytest.raises(ActionError, match="outside the file roots"):
        await run(actions, "checksum", ctx, path=str(root / "link"))
    with pytest.raises(ActionError, match="not an existing file"):
        await run(actions, "checksum", ctx, path=str(root))


# --------------------------------------------------------------------------- sleep / fail


async def test_sleep_accepts_a_numeric_string_and_reports_progress(
    actions: dict[str, Action], tmp_path: Path
) -> None:
    progress: Progress = []
    assert (
        await run(actions, "sleep", make_ctx(tmp_path, progress=progress), seconds="0.05") is None
    )
    assert progress == [(100.0, "slept 0.05 of 0.05 s")]


async def test_sleep_zero_returns_at_once(actions: dict[str, Action], tmp_path: Path) -> None:
    progress: Progress = []
    assert await run(actions, "sleep", make_ctx(tmp_path, progress=progress), seconds=0) is None
    assert progress == []


@pytest.mark.parametrize("seconds", [None, "soon", -1, "nan", float("inf")])
async def test_sleep_refuses_bad_seconds(
    actions: dict[str, Action], tmp_path: Path, seconds: object
) -> None:
    with pytest.raises(ActionError, match="'seconds' must be"):
        await run(actions, "sleep", make_ctx(tmp_path), seconds=seconds)


async def test_fail_always_fails_with_its_message(
    actions: dict[str, Action], tmp_path: Path
) -> None:
    with pytest.raises(ActionError, match=r"^disk on fire$"):
        await run(actions, "fail", make_ctx(tmp_path), message="disk on fire")
    with pytest.raises(ActionError, match="failed on purpose"):
        await run(actions, "fail", make_ctx(tmp_path))
