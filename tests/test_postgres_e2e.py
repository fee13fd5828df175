"""The real daemon on PostgreSQL (``[daemon] database``): jobs run, and a SIGKILL loses nothing.

Each test gets a fresh database on a real server (tests/pgserver.py); nothing sleeps.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import psycopg

from tests import e2e


def _show(daemon: e2e.Daemon, job_id: int) -> dict[str, Any]:
    shown: dict[str, Any] = daemon.cli_json("show", str(job_id))
    return shown


def _submit(daemon: e2e.Daemon, *args: str) -> int:
    done = daemon.cli("submit", *args, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    return int(json.loads(done.stdout)["id"])


def test_a_daemon_on_postgresql_runs_jobs_into_the_database(base: Path, pg_url: str) -> None:
    extra = f'database = "{pg_url}"'
    with e2e.running_daemon(base, daemon_extra=extra) as daemon:
        done = daemon.cli("submit", "demo", "-p", "who=pg", "--wait")
        assert done.returncode == 0, done.stderr + done.stdout + daemon.log_text()
    assert not (base / "state" / "jobd.db").exists()  # SQLite was not used
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT state FROM jobs WHERE workflow = 'demo'").fetchall()
        steps = conn.execute("SELECT state FROM steps ORDER BY idx").fetchall()
    assert rows == [("completed",)]
    assert steps == [("completed",), ("completed",)]
    with e2e.running_daemon(base, daemon_extra=extra) as again:  # the same truth after a restart
        listed = again.cli_json("list")
        jobs = listed["items"] if isinstance(listed, dict) else listed
        assert [job["state"] for job in jobs] == ["completed"]


def test_a_sigkilled_node_s_running_step_is_an_interrupted_attempt(base: Path, pg_url: str) -> None:
    flag = base / "release"
    extra = f'database = "{pg_url}"'
    layout = e2e.write_layout(base, daemon_extra=extra)
    daemon = e2e.start_daemon(layout)
    try:
        job_id = _submit(daemon, "hold", "-p", f"path={flag}")
        e2e.wait_until(lambda: _show(daemon, job_id)["state"] == "running", what="running")
        daemon.send(signal.SIGKILL)
        daemon.proc.wait()
    finally:
        daemon.notify.close()
    flag.touch()
    with e2e.running_daemon(base, daemon_extra=extra) as again:
        e2e.wait_until(lambda: _show(again, job_id)["state"] in ("completed", "failed"))
        shown = _show(again, job_id)
    # The interrupted attempt ends the job (the step has no retries left) or is retried: either
    # way the daemon took it up from PostgreSQL, and recorded why.
    causes = [h["cause"] for h in shown["history"]]
    assert any("interrupt" in c or "recover" in c for c in causes), causes


def test_a_daemon_that_loses_its_database_stops_saying_so(base: Path, pg_url: str) -> None:
    extra = f'database = "{pg_url}"'
    layout = e2e.write_layout(base, daemon_extra=extra)
    daemon = e2e.start_daemon(layout)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            dbname = conn.info.dbname
            admin = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        assert admin  # the daemon's connections were there, and are gone
        done = daemon.cli("submit", "demo", "-p", "who=x")
        status = daemon.proc.wait(timeout=60)
    finally:
        if daemon.alive:
            daemon.proc.kill()
            daemon.proc.wait()
        daemon.notify.close()
    assert status != 0, done.stdout + done.stderr
    assert "lost the database" in daemon.log_text()


def _record(daemon: e2e.Daemon, job_id: int) -> dict[str, Any]:
    """What ``jobd show`` and ``jobd logs`` say of a job, less what a copy may renumber."""
    shown = _show(daemon, job_id)
    logs = daemon.cli("logs", str(job_id))
    assert logs.returncode == 0, logs.stderr
    keep = ("id", "name", "workflow", "state", "params", "error", "steps", "history")
    return {**{k: shown.get(k) for k in keep}, "logs": logs.stdout}


def _states(daemon: e2e.Daemon) -> dict[int, str]:
    listed = daemon.cli_json("list")
    jobs = listed["items"] if isinstance(listed, dict) else listed
    return {job["id"]: job["state"] for job in jobs}


def test_db_copy_moves_a_stopped_sqlite_installation_with_nothing_lost(
    base: Path, pg_url: str
) -> None:
    with e2e.running_daemon(base) as daemon:
        ids = [_submit(daemon, "demo", "-p", f"who=n{i}") for i in range(2)]
        gone = _submit(daemon, "demo", "-p", "who=gone")
        e2e.wait_until(lambda: _states(daemon) == {i: "completed" for i in (*ids, gone)})
        assert daemon.cli("delete", str(gone)).returncode == 0
        before = {i: _record(daemon, i) for i in ids}
        refused = daemon.cli("db", "copy", "--to", pg_url, "--config", str(daemon.layout.config))
        assert refused.returncode != 0 and "already running" in refused.stderr  # not while it runs
    layout = e2e.Layout(base)
    done = e2e.run_cli("db", "copy", "--to", pg_url, "--config", str(layout.config))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "copied 2 jobs, 4 steps" in done.stdout
    again = e2e.run_cli("db", "copy", "--to", pg_url, "--config", str(layout.config))
    assert again.returncode != 0 and "not empty" in again.stderr
    layout.config.write_text(
        layout.config.read_text().replace("[daemon]\n", f'[daemon]\ndatabase = "{pg_url}"\n', 1)
    )
    with e2e.running_daemon(base) as moved:
        assert {i: _record(moved, i) for i in ids} == before
        assert [h["cause"] for h in moved.cli_json("show", str(ids[0]))["history"]]
        new = _submit(moved, "demo", "-p", "who=after")
        assert new > gone  # the deleted job's id is not handed out again
    with psycopg.connect(pg_url) as conn:
        deleted = conn.execute("SELECT count(*) FROM history WHERE job_id = %s", (gone,))
        row = deleted.fetchone()
    assert row is not None and row[0] > 0  # a deleted job's history came along
