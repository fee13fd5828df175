"""The real daemon as a subprocess: start-up, CLI round trips, reload, signals, hostile input.

Readiness is READY=1 on our own NOTIFY_SOCKET (see tests/e2e.py); nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobd.config import Config
from jobd.service import daemon as daemon_module
from tests import e2e


@pytest.fixture(scope="module")
def shared() -> Iterator[e2e.Daemon]:
    """One daemon for the tests that only read or add jobs (start-up costs ~1 s)."""
    with e2e.running_daemon() as daemon:
        yield daemon


def http(daemon: e2e.Daemon) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(daemon.layout.socket)),
        base_url="http://jobd",
        timeout=30,
    )


def items(listing: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = listing["items"] if isinstance(listing, dict) else listing
    return found


def submit_http(daemon: e2e.Daemon, **body: Any) -> dict[str, Any]:
    with http(daemon) as client:
        answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 201, answer.text
    job: dict[str, Any] = answer.json()
    return job


def wait_for_state(daemon: e2e.Daemon, job_id: int, *states: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        with http(daemon) as client:
            found.update(client.get(f"/v1/jobs/{job_id}").json())
        return found.get("state") in states

    e2e.wait_until(reached, what=f"job {job_id} in {states}")
    return found


# --------------------------------------------------------------------------- the CLI


def test_submit_wait_then_list_show_logs(shared: e2e.Daemon) -> None:
    done = shared.cli("submit", "demo", "-p", "who=world", "--wait")
    assert done.returncode == 0, done.stderr + done.stdout
    listed = items(shared.cli_json("list"))
    demo = [job for job in listed if job["workflow"] == "demo"]
    assert demo and demo[0]["state"] == "completed"
    job_id = demo[0]["id"]
    shown = shared.cli_json("show", str(job_id))
    assert shown["state"] == "completed"
    assert [s["state"] for s in shown["steps"]] == ["completed", "completed"]
    assert shown["steps"][0]["outputs"] == {"echo": {"greeting": "hello world"}}
    assert [h["to"] for h in shown["history"]][-1] == "completed"
    logs = shared.cli("logs", str(job_id))
    assert logs.returncode == 0, logs.stderr
    assert "echoing" in logs.stdout and "hello world" in logs.stdout


def test_cli_reports_refusals_with_exit_1(shared: e2e.Daemon) -> None:
    done = shared.cli("submit", "no-such-workflow")
    assert done.returncode == 1 and "no-such-workflow" in done.stderr


def test_cli_without_a_daemon_exits_3(base: Path) -> None:
    done = e2e.run_cli("list", env=e2e.jobd_env(JOBD_SOCKET=str(base / "nobody.sock")))
    assert done.returncode == 3, done.stderr


# --------------------------------------------------------------------------- hostile HTTP


def test_bad_requests_are_4xx_and_harmless(shared: e2e.Daemon) -> None:
    before = submit_http(shared, workflow="demo", params={"who": "before"})
    wait_for_state(shared, before["id"], "completed")
    bad: list[tuple[str, bytes | None, Any]] = [
        ("malformed JSON", b'{"workflow": "demo",', None),
        ("wrong types", None, {"workflow": "demo", "priority": "high", "assets": "a"}),
        ("unknown workflow", None, {"workflow": "nope"}),
        ("time without a zone", None, {"workflow": "demo", "start_at": "2030-01-01T10:00:00"}),
        ("1 MB body", b'{"workflow": "demo", "params": {"x": "' + b"x" * 1_048_576 + b'"}}', None),
        ("not an object", None, [1, 2, 3]),
    ]
    with http(shared) as client:
        for what, raw, body in bad:
            if raw is not None:
                answer = client.post(
                    "/v1/jobs", content=raw, headers={"content-type": "application/json"}
                )
            else:
                answer = client.post("/v1/jobs", json=body)
            assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text)
            assert "error" in answer.json(), what
        assert client.get("/v1/jobs/99999999").status_code == 404
        assert client.post(f"/v1/jobs/{before['id']}/frobnicate").status_code in (400, 404)
        assert client.get("/v1/health").status_code == 200
        again = client.get(f"/v1/jobs/{before['id']}").json()
    assert again["state"] == "completed" and again["params"] == {"who": "before"}
    assert shared.alive


# --------------------------------------------------------------------------- reload


def test_reload_with_a_bad_config_keeps_the_old_one(base: Path) -> None:
    with e2e.running_daemon(base) as daemon:
        good = daemon.layout.config.read_text()
        daemon.layout.config.write_text(good + "\n[workflows.broken]\nsteps = 3\n")
        daemon.reload()
        refused = [e for e in daemon.log_events() if "refused" in str(e.get("event"))]
        assert refused and "broken" in json.dumps(refused[-1])
        with http(daemon) as client:
            assert client.get("/v1/health").status_code == 200
        done = daemon.cli("submit", "demo", "-p", "who=x", "--wait")
        assert done.returncode == 0, done.stderr


def test_reload_with_a_good_config_adds_a_workflow(base: Path) -> None:
    with e2e.running_daemon(base) as daemon:
        assert daemon.cli("submit", "later", "--wait").returncode == 1
        text = daemon.layout.config.read_text()
        daemon.layout.config.write_text(
            text + '\n[workflows.later]\nsteps = [{ name = "s", action = "e2e_echo" }]\n'
        )
        daemon.reload()
        assert any(e.get("event") == "config reloaded" for e in daemon.log_events())
        done = daemon.cli("submit", "later", "--wait")
        assert done.returncode == 0, done.stderr


def test_reload_through_the_api_refuses_a_bad_config(base: Path) -> None:
    with e2e.running_daemon(base) as daemon:
        daemon.layout.config.write_text("[daemon\n")
        with http(daemon) as client:
            answer = client.post("/v1/reload")
            assert answer.status_code == 400, answer.text
            assert client.get("/v1/health").status_code == 200


# --------------------------------------------------------------------------- start and stop


def test_a_bad_config_exits_before_creating_anything(base: Path) -> None:
    layout = e2e.write_layout(base, daemon_extra="bogus_key = 1")
    done = e2e.run_daemon_to_exit(layout.config)
    assert done.returncode == 1
    assert "bogus_key" in done.stderr and str(layout.config) in done.stderr
    assert not layout.socket.exists() and not layout.state.exists()


def test_a_world_readable_token_is_refused_before_anything(base: Path) -> None:
    token = base / "token"
    token.write_text("secret\n")
    token.chmod(0o644)
    layout = e2e.write_layout(
        base, api_extra=f'listen = "127.0.0.1:{e2e.free_port()}"\ntoken_file = "{token}"'
    )
    done = e2e.run_daemon_to_exit(layout.config)
    assert done.returncode == 1 and "lets group or others read it" in done.stderr
    assert not layout.socket.exists() and not layout.state.exists()


def test_sigterm_exits_0_and_removes_the_socket(base: Path) -> None:
    daemon = e2e.start_daemon(e2e.write_layout(base))
    try:
        assert daemon.layout.socket.exists()
        assert daemon.stop() == 0, daemon.log_text()
        daemon.notify.wait_for("STOPPING")
        assert not daemon.layout.socket.exists()
    finally:
        daemon.notify.close()


def test_an_idle_daemon_exits_1_when_its_writer_process_dies(base: Path) -> None:
    """The daemon hears its database writer's end on the pipe, not at its next write: an
    idle daemon (nothing to write) stops too, and systemd's Restart= starts both again."""
    daemon = e2e.start_daemon(e2e.write_layout(base))
    try:
        children = Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children")
        (writer,) = (int(pid) for pid in children.read_text().split())
        os.kill(writer, signal.SIGKILL)
        assert daemon.proc.wait(timeout=60) == 1, daemon.log_text()
        assert "database writer process" in daemon.log_text()
    finally:
        if daemon.alive:
            daemon.proc.kill()
            daemon.proc.wait()
        daemon.notify.close()


def test_a_second_daemon_on_the_same_state_refuses(base: Path) -> None:
    with e2e.running_daemon(base / "first") as first:
        layout = e2e.write_layout(base / "second")
        layout.config.write_text(
            layout.config.read_text().replace(str(layout.state), str(first.layout.state))
        )
        done = e2e.run_daemon_to_exit(layout.config)
        assert done.returncode == 1
        assert "already running" in done.stderr and str(first.layout.state) in done.stderr
        assert not layout.socket.exists()
        with http(first) as client:
            assert client.get("/v1/health").status_code == 200


def test_a_live_socket_of_another_daemon_is_not_stolen(base: Path) -> None:
    with e2e.running_daemon(base / "first") as first:
        layout = e2e.write_layout(base / "second")
        layout.config.write_text(
            layout.config.read_text().replace(str(layout.socket), str(first.layout.socket))
        )
        done = e2e.run_daemon_to_exit(layout.config)
        assert done.returncode == 1
        assert "another jobd is listening" in done.stdout + done.stderr
        with http(first) as client:
            assert client.get("/v1/health").status_code == 200


def test_sigterm_drains_a_running_job_with_the_api_up(base: Path) -> None:
    flag = base / "release"
    with e2e.running_daemon(base, shutdown_grace=60) as daemon:
        job = submit_http(daemon, workflow="hold", params={"path": str(flag)})
        wait_for_state(daemon, job["id"], "running")
        daemon.send(signal.SIGTERM)
        daemon.notify.wait_for("STOPPING", alive=lambda: daemon.alive)
        with http(daemon) as client:  # operators can still watch the drain
            assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"
            late = client.post("/v1/jobs", json={"workflow": "demo", "params": {"who": "x"}})
        # Draining stops admission, not submission: a late job is stored, not run.
        assert late.status_code == 201, late.text
        flag.touch()
        assert daemon.stop() == 0, daemon.log_text()
    with e2e.running_daemon(base) as again:
        assert again.cli_json("show", str(job["id"]))["state"] == "completed"
        wait_for_state(again, late.json()["id"], "completed")  # it runs after the restart


def test_sigterm_ends_open_event_streams(base: Path) -> None:
    with (
        e2e.running_daemon(base) as daemon,
        http(daemon) as client,
        client.stream("GET", "/v1/events") as events,
    ):
        assert events.status_code == 200
        assert daemon.stop() == 0, daemon.log_text()
        assert not daemon.layout.socket.exists()


def test_a_second_sigterm_forces_the_stop(base: Path) -> None:
    flag = base / "never"
    with e2e.running_daemon(base, shutdown_grace=600) as daemon:
        job = submit_http(daemon, workflow="hold", params={"path": str(flag)})
        wait_for_state(daemon, job["id"], "running")
        daemon.send(signal.SIGTERM)
        daemon.notify.wait_for("STOPPING", alive=lambda: daemon.alive)
        assert daemon.stop() == 0, daemon.log_text()  # well before the 600 s grace
        assert any("second stop signal" in str(e.get("event")) for e in daemon.log_events())
        assert not daemon.layout.socket.exists()


def test_watchdog_pings_when_systemd_asks(base: Path) -> None:
    layout = e2e.write_layout(base)
    daemon = e2e.start_daemon(layout, extra_env={"WATCHDOG_USEC": "200000"})
    try:
        daemon.notify.wait_for("WATCHDOG", alive=lambda: daemon.alive)
        daemon.notify.wait_for("WATCHDOG", alive=lambda: daemon.alive)
        assert daemon.stop() == 0
    finally:
        daemon.notify.close()


# --------------------------------------------------------------------------- TCP


def test_tcp_needs_the_token(base: Path) -> None:
    token = base / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    port = e2e.free_port()
    with (
        e2e.running_daemon(base, api_extra=f'listen = "127.0.0.1:{port}"\ntoken_file = "{token}"'),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        assert client.get("/v1/jobs").status_code == 401
        bad = client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        assert client.get("/v1/health").status_code == 200
        good = client.get("/v1/jobs", headers={"Authorization": "Bearer s3cret-token"})
        assert good.status_code == 200
    with socket.socket() as again:  # the listener is gone after the stop
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- pieces, in-process


def test_reload_keeps_what_needs_a_restart() -> None:
    old = Config()
    new = dataclasses.replace(
        old,
        api=dataclasses.replace(old.api, socket=Path("/elsewhere.sock")),
        daemon=dataclasses.replace(old.daemon, synchronous="normal", shutdown_grace=5),
    )
    kept, warnings = daemon_module._keep_restart_only(old, new)
    assert kept.api == old.api and kept.daemon.synchronous == "full"
    assert kept.daemon.shutdown_grace == 5  # reloadable: taken
    assert warnings == ["api.socket, daemon.synchronous: take effect on restart"]
    assert daemon_module._keep_restart_only(old, old) == (old, [])


def test_state_lock_is_exclusive_and_names_the_holder(base: Path) -> None:
    with daemon_module.StateLock.acquire(base / "state") as lock:
        assert lock.path.read_text().strip() == str(os.getpid())
        with pytest.raises(daemon_module.AlreadyRunning, match=f"pid {os.getpid()}"):
            daemon_module.StateLock.acquire(base / "state")
    daemon_module.StateLock.acquire(base / "state").release()  # free again


def test_sigterm_past_the_grace_interrupts_and_the_next_start_resumes(base: Path) -> None:
    flag = base / "release"
    with e2e.running_daemon(base, shutdown_grace=0.5) as daemon:
        job = submit_http(daemon, workflow="hold", params={"path": str(flag)})
        wait_for_state(daemon, job["id"], "running")
        assert daemon.stop() == 0, daemon.log_text()  # the grace runs out: step interrupted
    flag.touch()
    with e2e.running_daemon(base) as again:
        wait_for_state(again, job["id"], "completed")
        shown = again.cli_json("show", str(job["id"]))
    step = shown["steps"][0]
    assert step["state"] == "completed"
    assert step["attempts"] == 1  # the interrupted attempt did not count against the step
    assert any("interrupted" in h["cause"] for h in shown["history"])
