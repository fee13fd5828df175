"""The ``jobd`` command: parsing, exit codes, endpoint resolution, import cost, and the
client commands against the real API (engine + embedded server on a Unix socket, in
this process; the daemon's own end-to-end tests live elsewhere)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from structlog.testing import capture_logs

from jobd.client import cli
from jobd.client.remote import (
    ApiError,
    Client,
    DaemonUnreachable,
    Endpoint,
    parse_sse,
    resolve_endpoint,
)
from jobd.config import Config
from jobd.engine import Engine
from jobd.service.api import create_app, end_event_streams
from jobd.service.httpserver import serve
from tests.enginekit import make_config, running_engine, step, workflow

ROOT = Path(__file__).resolve().parent.parent
#: What a client command must never load (SPEC §6, ARCHITECTURE "Known traps").
DAEMON_STACK = (
    "fastapi",
    "starlette",
    "uvicorn",
    "apscheduler",
    "aiosqlite",
    "pydantic",
    "jobd.engine",
    "jobd.store",
    "jobd.service.api",
    "jobd.service.daemon",
    "prometheus_client",
)


def run_jobd(
    *args: str, env: dict[str, str] | None = None, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, isolated from the caller's JOBD_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOBD_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "jobd", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- parsing


def parse(*argv: str) -> Any:
    return cli.build_parser().parse_args(list(argv))


def test_submit_flags_become_the_api_body() -> None:
    args = parse(
        "submit",
        "ingest",
        "-p",
        "source=/a b.mxf",
        "-p",
        "expr=x=y",
        "--params-json",
        '{"source": "old", "n": 2}',
        "--asset",
        "vt-1",
        "--asset",
        "vt-2",
        "--shared-asset",
        "lib",
        "--resource",
        "enc-1",
        "--pool",
        "encoders",
        "--start",
        "2026-01-01T11:00:00+01:00",
        "--end",
        "2026-01-01T12:00Z",
        "--preroll",
        "5m",
        "--postroll",
        "30",
        "--priority",
        "-20",
        "--timeout",
        "1h",
        "--lock-timeout",
        "90s",
        "--tentative",
        "--name",
        "morning",
    )
    assert cli._submit_body(args) == {
        "workflow": "ingest",
        "params": {"source": "/a b.mxf", "expr": "x=y", "n": 2},
        "assets": ["vt-1", "vt-2"],
        "shared_assets": ["lib"],
        "resources": ["enc-1"],
        "pools": ["encoders"],
        "start_at": "2026-01-01T10:00:00+00:00",
        "end_at": "2026-01-01T12:00:00+00:00",
        "preroll": 300.0,
        "postroll": 30.0,
        "priority": -20,
        "timeout": 3600.0,
        "lock_timeout": 90.0,
        "state": "tentative",
        "name": "morning",
    }


def test_a_bare_submit_leaves_defaults_to_the_daemon() -> None:
    assert cli._submit_body(parse("submit", "w")) == {"workflow": "w", "params": {}}
    assert cli._submit_body(parse("submit", "w", "--draft"))["state"] == "draft"


def test_relative_start_is_sent_as_an_absolute_utc_time() -> None:
    before = time.time()
    start = cli._submit_body(parse("submit", "w", "--start", "+5m"))["start_at"]
    assert start.endswith("+00:00")
    from jobd.core.timefmt import parse_time

    assert before + 300 <= parse_time(start) <= time.time() + 300


def test_connection_options_work_before_and_after_the_command() -> None:
    assert parse("--socket", "/a", "list").socket == "/a"
    assert parse("list", "--socket", "/b").socket == "/b"
    assert parse("--url", "http://h:1", "show", "4", "--token", "t").token == "t"
    assert not hasattr(parse("list"), "socket")


def test_batch_operations_take_several_ids() -> None:
    args = parse("invoice-ready", "3", "4", "5")
    assert args.operation == "invoice-ready" and args.job_ids == [3, 4, 5]
    assert set(cli.OPERATIONS) == {
        "cancel",
        "stop",
        "pause",
        "resume",
        "retry",
        "restart",
        "confirm",
        "tentative",
        "unconfirm",
        "resubmit",
        "invoice-ready",
        "invoiced",
        "delete",
    }


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "usage"),
        (["bogus"], "invalid choice"),
        (["submit"], "submit needs a WORKFLOW, or --file F"),
        (["submit", "w", "--file", "-"], "no WORKFLOW"),
        (["submit", "w", "--priority", "2000"], "outside -1000..1000"),
        (["submit", "w", "--priority", "high"], "not an integer"),
        (["submit", "w", "--start", "2026-01-01T10:00"], "has no zone; add Z or +01:00"),
        (["submit", "w", "--end", "tomorrow"], "not ISO 8601"),
        (["submit", "w", "--preroll", "-5"], "duration"),
        (["submit", "w", "-p", "novalue"], "not key=value"),
        (["submit", "w", "--params-json", "[1]"], "JSON object"),
        (["submit", "w", "--params-json", "{"], "not valid JSON"),
        (["submit", "w", "--draft", "--tentative"], "not allowed with"),
        (["submit", "w", "--wait", "--draft"], "--wait needs a confirmed job"),
        (["show"], "required"),
        (["show", "abc"], "not a positive integer"),
        (["cancel"], "cancel needs job ids, or filters"),
        (["cancel", "1", "--state", "queued"], "ids or filters, not both"),
        (["schedules", "run"], "needs the schedule's NAME"),
        (["schedules", "frobnicate", "x"], "invalid choice"),
        (["edit", "3"], "nothing to change"),
        (["list", "--since", "yesterday"], "not ISO 8601"),
        (["list", "--state", "bogus"], "unknown state 'bogus' (one of: draft, tentative,"),
        (["cancel", "--state", "done"], "unknown state 'done'"),
        (["cancel", "1", "0"], "not a positive integer"),
        (["list", "--limit", "0"], "not a positive integer"),
        (["bookings", "--from", "2026-01-01"], "has no zone"),
    ],
)
def test_usage_errors_exit_2_and_say_why(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--socket", "/nonexistent/jobd.sock", *argv]) == 2
    assert says in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in (
        "run",
        "check-config",
        "submit",
        "list",
        "show",
        "logs",
        "watch",
        "bookings",
        "invoice-ready",
        "reload",
    ):
        assert command in out


# --------------------------------------------------------------------------- reaching the daemon


def test_an_absent_socket_is_exit_3_naming_it(tmp_path: Path) -> None:
    sock = tmp_path / "nobody-home.sock"
    result = run_jobd("--socket", str(sock), "list")
    assert result.returncode == 3
    assert f"cannot reach jobd at unix socket {sock} (from --socket;" in result.stderr
    assert "config /etc/jobd/jobd.toml, the default" in result.stderr
    assert "Start it with `jobd run --config /etc/jobd/jobd.toml`" in result.stderr
    assert "usage:" not in result.stderr and len(result.stderr.splitlines()) == 2
    result = run_jobd("cancel", "1", "2", env={"JOBD_SOCKET": str(sock)})
    assert result.returncode == 3 and f"{sock} (from JOBD_SOCKET;" in result.stderr


def test_unreachable_says_which_config_gave_the_socket(tmp_path: Path) -> None:
    sock = tmp_path / "configured.sock"
    config = tmp_path / "jobd.toml"
    config.write_text(f'[api]\nsocket = "{sock}"\n')
    result = run_jobd("list", env={"JOBD_CONFIG": str(config)})
    assert result.returncode == 3
    assert f"unix socket {sock} (from its [api] socket; config {config}, JOBD_CONFIG)" in (
        result.stderr
    )
    assert f"`jobd run --config {config}`" in result.stderr


def test_a_closed_tcp_port_is_exit_3() -> None:
    result = run_jobd("queue", env={"JOBD_URL": "http://127.0.0.1:9", "JOBD_TOKEN": "t"})
    assert result.returncode == 3 and "http://127.0.0.1:9" in result.stderr


def test_endpoint_resolution_order(tmp_path: Path) -> None:
    config = tmp_path / "jobd.toml"
    config.write_text(f'[api]\nsocket = "{tmp_path / "from-config.sock"}"\n')
    env = {
        "JOBD_SOCKET": "/env.sock",
        "JOBD_URL": "http://env:1",
        "JOBD_TOKEN": "envtok",
        "JOBD_CONFIG": str(config),
    }
    assert resolve_endpoint(socket="/opt.sock", environ=env) == Endpoint(socket=Path("/opt.sock"))
    assert resolve_endpoint(environ=env) == Endpoint(socket=Path("/env.sock"))
    del env["JOBD_SOCKET"]
    assert resolve_endpoint(environ=env) == Endpoint(url="http://env:1", token="envtok")
    assert resolve_endpoint(url="http://opt:2/", token="o", environ=env) == Endpoint(
        url="http://opt:2", token="o"
    )
    del env["JOBD_URL"]
    assert resolve_endpoint(environ=env).socket == str(tmp_path / "from-config.sock")


def test_an_unreadable_config_falls_back_to_the_default_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "jobd.toml"
    config.write_text("[daemon]\nworkers = 'many'\n")
    assert resolve_endpoint(config=str(config), environ={}).socket == "/run/jobd/jobd.sock"
    assert "daemon.workers" in capsys.readouterr().err


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[workflows.w]\nsteps = [{name = "a", action = "sleep", params={seconds=1}}]')
    bad.write_text("[daemon]\nworkers = 0\n")
    assert cli.main(["check-config", "--config", str(good)]) == 0
    assert "workflows (1): w" in capsys.readouterr().out
    assert cli.main(["--config", str(bad), "check-config"]) == 1
    assert "daemon.workers" in capsys.readouterr().err


# --------------------------------------------------------------------------- import cost


def _imported_modules(stderr: str) -> set[str]:
    return {
        m.group(1).strip()
        for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", stderr, re.MULTILINE)
    }


def test_a_client_command_does_not_import_the_daemon_stack(tmp_path: Path) -> None:
    result = run_jobd(
        "--socket", str(tmp_path / "x.sock"), "list", python_flags=("-X", "importtime")
    )
    assert result.returncode == 3
    modules = _imported_modules(result.stderr)
    assert "jobd.client.cli" in modules and "jobd.client.wire" in modules  # the measurement works
    heavy = (*DAEMON_STACK, "httpx", "rich", "http")  # http.client: ~25 ms of email parsing
    loaded = sorted(m for m in modules if m.split(".")[0] in heavy or m in heavy)
    assert loaded == []


def test_importing_the_cli_loads_neither_httpx_nor_rich() -> None:
    code = (
        f"import sys, jobd.client.cli; heavy = ('httpx', 'rich', *{DAEMON_STACK!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- client pieces


def test_sse_parsing_skips_comments_and_joins_data_lines() -> None:
    lines = [
        ": connected",
        "",
        "event: job",
        'data: {"job_id": 1,',
        'data: "kind": "state"}',
        "",
        ": keepalive",
        "",
        "event: other",
        "data: {}",
        "",
        'data: {"job_id": 2}',
        "",
    ]
    assert list(parse_sse(iter(lines))) == [{"job_id": 1, "kind": "state"}, {"job_id": 2}]


@contextmanager
def _answering(answers: dict[str, tuple[int, str, bytes]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering ``path -> (status, content type, body)``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, kind, body = answers[self.path.split("?")[0]]
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_error_answers_become_api_errors() -> None:
    error = {"error": {"code": "invalid-transition", "message": "no", "details": {"a": 1}}}
    answers = {
        "/v1/queue": (502, "text/html", b"<html>bad gateway</html>"),
        "/v1/jobs/1/cancel": (409, "application/json", json.dumps(error).encode()),
    }
    with _answering(answers) as url, Client(Endpoint(url=url)) as client:
        with pytest.raises(ApiError) as caught:
            client.operate(1, "cancel")
        assert (
            caught.value.status,
            caught.value.code,
            caught.value.message,
            caught.value.details,
        ) == (409, "invalid-transition", "no", {"a": 1})
        with pytest.raises(ApiError, match="not JSON"):
            client.queue()


# --------------------------------------------------------------------------- against the API


class Daemon:
    def __init__(self, sock: Path, engine: Engine) -> None:
        self.sock, self.engine = sock, engine

    def jobd(self, *argv: str) -> int:
        return cli.main(["--socket", str(self.sock), *argv])


@asynccontextmanager
async def _serving(config: Config, sock: Path) -> AsyncIterator[Engine]:
    async with running_engine(config) as engine:
        app = create_app(engine, version="test", started_at=time.time())
        async with anyio.create_task_group() as tg:
            await tg.start(partial(serve, app, unix_socket=sock))
            try:
                yield engine
            finally:
                end_event_streams(app)  # as the daemon does: shutdown need not wait for them
                tg.cancel_scope.cancel()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """The engine and API on a Unix socket, served from a thread so the CLI can block."""
    flows = [
        workflow("quick", step("nap", "sleep", params={"seconds": 0})),
        workflow("hold", step("nap", "sleep", params={"seconds": 30})),
        workflow("boom", step("explode", "fail", params={"message": "kaboom"})),
    ]
    config = make_config(tmp_path, flows)
    short = Path(tempfile.mkdtemp(prefix="jobd-cli-"))  # sun_path is 107 bytes at most
    try:
        with (
            capture_logs(),
            start_blocking_portal() as portal,
            portal.wrap_async_context_manager(_serving(config, short / "s")) as engine,
        ):
            yield Daemon(short / "s", engine)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_submit_wait_list_show_logs(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.jobd("submit", "quick", "--wait", "--name", "first") == 0
    out, err = capsys.readouterr()
    job_id = int(out.strip())
    assert f"job {job_id} completed" in err
    assert daemon.jobd("submit", "boom", "--wait") == 1
    out, err = capsys.readouterr()
    assert f"job {int(out)} failed" in err
    assert daemon.jobd("list", "--json", "--state", "completed") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in listed["items"]] == [job_id]
    assert daemon.jobd("list") == 0
    table = capsys.readouterr().out
    assert "first" in table and "failed" in table and "completed" in table
    assert daemon.jobd("show", str(job_id)) == 0
    shown = capsys.readouterr().out
    assert "steps" in shown and "history" in shown and "nap" in shown
    assert daemon.jobd("show", str(job_id), "--json") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "completed"
    assert daemon.jobd("logs", str(job_id)) == 0
    assert daemon.jobd("logs", str(job_id), "-f", "--json") == 0  # finished: returns at once
    assert daemon.jobd("show", "999") == 1
    assert "job 999 not found" in capsys.readouterr().err


def test_batch_operations_report_each_id(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for _ in range(2):
        assert daemon.jobd("submit", "quick", "--draft") == 0
        ids.append(capsys.readouterr().out.strip())
    assert daemon.jobd("confirm", *ids, "--json") == 2  # operations are not reading commands
    capsys.readouterr()
    assert daemon.jobd("cancel", ids[0]) == 0
    assert capsys.readouterr().out == f"job {ids[0]}: canceled\n"
    assert daemon.jobd("invoice-ready", *ids, "999") == 1
    out, err = capsys.readouterr()
    assert out == f"job {ids[0]}: ready-for-invoice\n"
    assert f"job {ids[1]}: cannot invoice-ready a job in state draft" in err
    assert "job 999 not found" in err
    assert daemon.jobd("resubmit", ids[1]) == 0
    assert re.fullmatch(
        rf"job {ids[1]}: resubmitted as job \d+ \(draft\)\n", capsys.readouterr().out
    )
    assert daemon.jobd("delete", ids[1]) == 0
    assert capsys.readouterr().out == f"job {ids[1]}: deleted\n"


def test_inspection_commands(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.jobd("submit", "hold", "--asset", "vt-1") == 0
    holder = capsys.readouterr().out.strip()
    for command in ("queue", "locks", "resources", "bookings", "schedules", "plugins"):
        assert daemon.jobd(command) == 0, command
        assert capsys.readouterr().out.strip(), command
        assert daemon.jobd(command, "--json") == 0, command
        assert isinstance(json.loads(capsys.readouterr().out), dict), command
    assert daemon.jobd("plugins", "--json") == 0
    plugins = json.loads(capsys.readouterr().out)
    assert "sleep" in {action["name"] for action in plugins["actions"]}
    assert daemon.jobd("locks") == 0
    assert "vt-1" in capsys.readouterr().out
    assert daemon.jobd("bookings", "--from", "now", "--to", "+1h", "--json") == 0
    assert json.loads(capsys.readouterr().out)["items"] == []
    assert daemon.jobd("reload") == 1  # this app was built without a reload function
    assert "cannot reload" in capsys.readouterr().err
    assert daemon.jobd("cancel", holder) == 0


def test_an_api_error_during_a_read_is_exit_1(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daemon.jobd("submit", "no-such-workflow") == 1
    assert "unknown workflow 'no-such-workflow'" in capsys.readouterr().err


def test_wait_prints_each_change_until_the_end(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    class ReadingClient(Client):
        """The real client; says when ``_wait_for`` has read the job's state."""

        state_read = threading.Event()

        def get_job(self, job_id: int) -> dict[str, Any]:
            job = super().get_job(job_id)
            self.state_read.set()
            return job

    endpoint = Endpoint(socket=daemon.sock)
    # The waiter has a client of its own: one client's keep-alive connection is
    # not to be shared between threads.
    with Client(endpoint) as client, ReadingClient(endpoint) as reader:
        job_id = client.submit({"workflow": "quick", "state": "draft"})["id"]
        result: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: result.update(cli._wait_for(reader, job_id)))
        waiter.start()
        # Confirm only once the waiter has subscribed *and* read the state (draft):
        # confirmed earlier, the job can finish before it is read, and then
        # _wait_for rightly returns without a change to print.
        assert reader.state_read.wait(20), "the waiter never read the job"
        client.operate(job_id, "confirm")
        waiter.join(20)
    assert result["state"] == "completed"
    err = capsys.readouterr().err
    for change in ("draft -> confirmed", "queued -> running", "running -> completed", "step nap "):
        assert change in err, err


def test_the_client_follows_events_after_subscribing(daemon: Daemon) -> None:
    with Client(Endpoint(socket=daemon.sock)) as client:
        job = client.submit({"workflow": "quick", "state": "draft"})
        with client.events(job["id"]) as events:
            client.operate(job["id"], "cancel")
            event = next(events)
    assert event["job_id"] == job["id"] and event["to"] == "canceled"


def test_the_client_raises_daemon_unreachable_in_process(tmp_path: Path) -> None:
    with (
        Client(Endpoint(socket=tmp_path / "elsewhere")) as client,
        pytest.raises(DaemonUnreachable, match="elsewhere"),
    ):
        client.health()


def test_watch_redraws_with_events_until_ctrl_c(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobd.client import render, textui

    real_view = render.watch_view
    seen: list[tuple[dict[str, Any], list[Any], list[Any]]] = []
    deadline = time.monotonic() + 20

    def view(queue: Any, jobs: Any, events: Any, problem: Any) -> Any:
        assert problem is None and time.monotonic() < deadline
        seen.append((queue, list(jobs), list(events)))
        if len(seen) == 1:
            while not daemon.engine._subscribers:  # the event thread has subscribed
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with Client(Endpoint(socket=daemon.sock)) as client:
                client.submit({"workflow": "quick"})
        elif events and jobs:
            raise KeyboardInterrupt  # what Ctrl-C does to the drawing loop
        return real_view(queue, jobs, events, problem)

    monkeypatch.setattr(render, "watch_view", view)
    monkeypatch.setattr(textui, "is_terminal", lambda stream=None: True)  # the live view
    assert daemon.jobd("watch", "--interval", "0.05") == 0
    queue, jobs, events = seen[-1]
    assert queue["workers"] == 4 and jobs[0]["workflow"] == "quick"
    assert events[0]["kind"] == "state" and events[0]["to"] == "confirmed"


# --------------------------------------------------------------------------- docs stay true


def test_every_command_and_route_is_documented() -> None:
    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    api_doc = (ROOT / "docs" / "api.md").read_text()
    subparsers = next(
        a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    for name, parser in subparsers.choices.items():
        assert f"`{name}`" in cli_doc or f"`jobd {name}" in cli_doc, f"docs/cli.md: {name}"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in cli_doc, f"docs/cli.md: {name} {flag}"
    app = create_app(_NoEngine(), version="x", started_at=0.0)  # type: ignore[arg-type]
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith(("/v1", "/metrics", "/openapi")):
            for method in sorted(getattr(route, "methods", ()) - {"HEAD"}):
                documented = path.replace("{job_id}", "{id}").replace(
                    "{action}", "run|pause|resume"
                )
                assert f"`{method} {documented}" in api_doc or (
                    method == "GET" and f"`{documented}`" in api_doc
                ), f"docs/api.md: {path}"


class _NoEngine:
    """Enough of an engine to build the app (routes are only listed, never called)."""

    def add_listener(self, listener: Any) -> None:
        pass


# --------------------------------------------------------------------------- issue 9 items 14, 16


def test_a_bad_value_prints_its_line_and_a_hint_not_the_usage_block() -> None:
    result = run_jobd("--socket", "/nonexistent.sock", "submit", "w", "--start", "2026-12-01T20:00")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "jobd submit: error: argument --start: time '2026-12-01T20:00' has no zone;"
        " add Z or +01:00",
        "jobd submit: see 'jobd submit --help'",
    ]


def test_a_time_in_the_past_parses_after_its_option() -> None:
    before = time.time()
    argv = cli._join_dash_values(["submit", "w", "--start", "-5m", "--end", "-1m"])
    body = cli._submit_body(cli.build_parser().parse_args(argv))
    from jobd.core.timefmt import parse_time

    assert before - 300 - 1 <= parse_time(body["start_at"]) <= time.time() - 300
    assert parse_time(body["end_at"]) - parse_time(body["start_at"]) == pytest.approx(240, abs=1)
    assert cli._join_dash_values(["list", "--state", "x", "--since", "-1h", "-h"]) == [
        "list", "--state", "x", "--since=-1h", "-h"
    ]  # fmt: skip


def test_version_without_a_daemon_is_the_clients(tmp_path: Path) -> None:
    from jobd import __version__

    result = run_jobd("--socket", str(tmp_path / "none.sock"), "--version")
    assert result.returncode == 0
    first, second = result.stdout.splitlines()
    assert first == f"jobd {__version__} (client)"
    assert second.startswith("daemon: not reachable: cannot reach jobd at unix socket")


def test_version_with_a_daemon_is_both(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.jobd("--version") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("(client)") and out[1] == (
        f"jobd test (daemon at unix socket {daemon.sock} (from --socket; "
        "config /etc/jobd/jobd.toml, the default))"
    )


def test_the_query_encoding_is_urllibs() -> None:
    from urllib.parse import quote, urlencode

    from jobd.client import wire

    params = {"state": ["failed", "timed-out"], "search": "news & sport/é 100%", "limit": 5}
    assert wire.query(params) == urlencode(params, doseq=True, quote_via=quote, safe="")
    assert wire.quote("a b/c", safe="/") == quote("a b/c", safe="/")


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "--state", "failed", "--since", "2026-01-01T00:00Z", "--json"],
        ["--socket", "/s", "cancel", "--workflow", "w"],
        ["--config", "list", "show", "4"],  # "list" is --config's value, show is the command
        ["submit", "demo", "-p", "a=b", "--start", "2026-01-01T00:00Z"],
        ["schedules", "pause", "nightly"],
        ["edit", "3", "--priority", "2"],
    ],
)
def test_building_only_the_named_command_parses_the_same(argv: list[str]) -> None:
    argv = cli._join_dash_values(argv)
    full = vars(cli.build_parser().parse_args(argv))
    only = vars(cli.build_parser(argv).parse_args(argv))
    assert full == only


def test_help_of_one_command_and_of_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cancel", "--help"]) == 0
    assert "--workflow" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "schedules" in out and "edit" in out
