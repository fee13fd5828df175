"""Workflow start/end scripts, run for real from files written to tmp_path."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import structlog
from structlog.testing import capture_logs

from jobd.run.scripts import ScriptResult, run_script, script_env
from tests.conftest import ListLog, read_pid
from tests.enginekit import pid_gone, wait_until

PY = sys.executable

JOB: dict[str, Any] = {
    "id": 42,
    "name": "evening news",
    "workflow": "ingest",
    "state": "running",
    "start_at": 1704164645.0,  # 2024-01-02T03:04:05Z
    "end_at": None,
    "assets": ["clip-1", "clip-2"],
    "shared_assets": ["logo"],
    "params": {"source": "/srv/media/in.mxf"},
    "reservations": [
        {"resource": "encoder-1", "start": 1.0, "end": 2.0},
        {"resource": "studio-a", "start": 1.0, "end": 2.0},
        {"resource": "encoder-1", "start": 3.0, "end": 4.0},
    ],
}


def write_script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.write_text(body)
    path.chmod(mode)
    return path


def dumping_script(tmp_path: Path) -> tuple[Path, Path]:
    """A Python script that saves its env, stdin and cwd as JSON, and talks a little."""
    dump = tmp_path / "dump.json"
    script = write_script(
        tmp_path / "dump-script",
        f"""#!{PY}
import json, os, sys
data = {{"env": dict(os.environ), "stdin": sys.stdin.read(), "cwd": os.getcwd()}}
with open({str(dump)!r}, "w") as f:
    json.dump(data, f)
print("hello from", os.environ["JOBD_EVENT"])
print("second line")
print("a warning", file=sys.stderr)
""",
    )
    return script, dump


async def run(path: Path, **kw: Any) -> ScriptResult:
    kw.setdefault("event", "start")
    kw.setdefault("job", JOB)
    kw.setdefault("outcome", None)
    kw.setdefault("timeout", 30.0)
    kw.setdefault("kill_grace", 1.0)
    kw.setdefault("log", ListLog())
    return await run_script(path, **kw)


async def test_start_script_gets_env_and_job_json_and_logs_lines(tmp_path: Path) -> None:
    script, dump = dumping_script(tmp_path)
    log = ListLog()
    result = await run(script, log=log)
    assert result.ok and result.exit_code == 0 and result.problem is None
    data = json.loads(dump.read_text())
    assert json.loads(data["stdin"]) == JOB
    env = data["env"]
    assert env["JOBD_JOB_ID"] == "42"
    assert env["JOBD_JOB_NAME"] == "evening news"
    assert env["JOBD_WORKFLOW"] == "ingest"
    assert env["JOBD_EVENT"] == "start"
    assert "JOBD_OUTCOME" not in env
    assert env["JOBD_START_AT"] == "2024-01-02T03:04:05+00:00"
    assert env["JOBD_END_AT"] == ""
    assert env["JOBD_ASSETS"] == "clip-1,clip-2"
    assert env["JOBD_RESOURCES"] == "encoder-1,studio-a"
    assert env["PATH"] == os.environ["PATH"]  # jobd's environment is kept
    lines = [(kw["stream"], kw["line"]) for kw in log.output()]
    assert lines[:2] == [("stdout", "hello from start"), ("stdout", "second line")]
    assert ("stderr", "a warning") in lines
    assert all(kw["script"] == str(script) and kw["script_event"] == "start" for kw in log.output())
    assert "hello from start" in result.output_tail and "a warning" in result.output_tail


async def test_works_with_a_real_structlog_logger(tmp_path: Path) -> None:
    # structlog reserves ``event`` for the message: the field is ``script_event``.
    script = write_script(tmp_path / "hi", "#!/bin/sh\necho hi\n")
    with capture_logs() as logs:
        result = await run(script, log=structlog.get_logger().bind(job_id=42))
    assert result.ok
    assert {
        "event": "script output",
        "script": str(script),
        "script_event": "start",
        "stream": "stdout",
        "line": "hi",
        "job_id": 42,
        "log_level": "info",
    } in logs


async def test_end_script_gets_outcome(tmp_path: Path) -> None:
    script, dump = dumping_script(tmp_path)
    job = {**JOB, "end_at": 1704168245.5}
    result = await run(script, event="end", outcome="failed", job=job)
    assert result.ok
    env = json.loads(dump.read_text())["env"]
    assert env["JOBD_EVENT"] == "end"
    assert env["JOBD_OUTCOME"] == "failed"
    assert env["JOBD_END_AT"] == "2024-01-02T04:04:05.500000+00:00"


async def test_cwd_and_relative_path(tmp_path: Path) -> None:
    script, dump = dumping_script(tmp_path)
    result = await run(Path(script.name), cwd=tmp_path)
    assert result.ok
    assert json.loads(dump.read_text())["cwd"] == str(tmp_path)


async def test_non_zero_exit_is_reported(tmp_path: Path) -> None:
    body = "#!/bin/sh\necho working\necho 'no tape' >&2\nexit 3\n"
    script = write_script(tmp_path / "fail", body)
    result = await run(script)
    assert not result.ok
    assert result.exit_code == 3 and not result.timed_out and result.error is None
    assert result.problem == "exited with 3: no tape"


async def test_missing_script_is_reported_not_raised(tmp_path: Path) -> None:
    log = ListLog()
    result = await run(tmp_path / "absent", log=log)
    assert result == ScriptResult(
        exit_code=None,
        timed_out=False,
        output_tail="",
        error=f"script {tmp_path / 'absent'} not found",
    )
    assert not result.ok
    assert log.records[-1][0] == "warning"


async def test_non_executable_script_is_reported(tmp_path: Path) -> None:
    script = write_script(tmp_path / "plain", "#!/bin/sh\nexit 0\n", mode=0o644)
    result = await run(script)
    assert result.exit_code is None and result.error is not None
    assert "not executable" in result.error


async def test_directory_is_reported(tmp_path: Path) -> None:
    result = await run(tmp_path)
    assert result.error is not None and "not a regular file" in result.error


async def test_script_without_interpreter_line_is_reported(tmp_path: Path) -> None:
    script = write_script(tmp_path / "garbage", "\x7fELF not really\n")
    result = await run(script)
    assert result.exit_code is None and result.error is not None
    assert "cannot be run" in result.error


async def test_timeout_kills_the_script_group_and_is_reported(
    tmp_path: Path, pidfile: Path
) -> None:
    script = write_script(
        tmp_path / "hang",
        f"""#!/bin/sh
echo started
sleep 1000 & echo $! > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"
wait
""",
    )
    result = await run(script, timeout=1.5, kill_grace=0.5)
    assert result.timed_out and not result.ok
    assert result.problem == "timed out"
    assert "started" in result.output_tail
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    await wait_until(lambda: pid_gone(grandchild))


def test_script_env_times_and_resource_fallback() -> None:
    job = {
        "id": 7,
        "name": None,
        "workflow": "w",
        "start_at": "2024-06-01T12:00:00+02:00",
        "end_at": None,
        "assets": [],
        "resources": ["r1", "r2"],
    }
    env = script_env(job, "start", None)
    assert env["JOBD_START_AT"] == "2024-06-01T10:00:00+00:00"
    assert env["JOBD_END_AT"] == ""
    assert env["JOBD_JOB_NAME"] == ""
    assert env["JOBD_ASSETS"] == ""
    assert env["JOBD_RESOURCES"] == "r1,r2"
    assert env["JOBD_SHARED_ASSETS"] == ""
    assert "JOBD_OUTCOME" not in env
    assert script_env(job, "end", "canceled")["JOBD_OUTCOME"] == "canceled"
