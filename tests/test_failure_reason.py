"""A job that ended failed or timed-out carries its reason in its ``error`` overlay: the
failing step and its last error, the failing start script, or the job's timeout. Through
the real engine, then through the real daemon, CLI and API."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from jobd.config import Config
from jobd.core.states import JobState
from tests.e2e import running_daemon, wait_until
from tests.enginekit import make_config, running_engine, spec, step, wait_state, workflow

S = JobState


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    failing = _script(tmp_path / "fails", "echo 'no tape in deck 3' >&2; exit 3")
    fine = _script(tmp_path / "fine", "exit 0")
    flaky = {"counter": str(tmp_path / "count"), "fail_times": 99}
    return make_config(
        tmp_path,
        [
            workflow("boom", step("explode", "t-flaky", params=flaky, retries=1)),
            workflow("slow", step("nap", "t-hang", timeout=0.2)),
            workflow("hang", step("nap", "t-hang", timeout=60)),
            workflow("bad-start", step("a", "t-noop"), start_script=failing, end_script=failing),
            workflow("bad-end", step("a", "t-noop"), start_script=fine, end_script=failing),
        ],
    )


async def test_a_failed_step_is_the_jobs_reason_and_retry_clears_it(config: Config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("boom"))
        done = await wait_state(engine, job.id, S.FAILED)
        assert done.error is not None and done.error.code == "step-failed"
        assert (
            done.error.message
            == "step explode failed after 2 attempts: ActionError: flaky failure 2"
        )
        assert done.steps[0].error == "ActionError: flaky failure 2"
        await engine.operate(job.id, "retry")
        again = await engine.get_job(job.id)
        assert again.error is None or again.error.code != "step-failed"


async def test_a_step_timeout_and_the_jobs_timeout_name_the_step(config: Config) -> None:
    async with running_engine(config) as engine:
        step_timeout = await engine.submit(spec("slow"))
        job_timeout = await engine.submit(spec("hang", timeout=0.2))
        done = await wait_state(engine, step_timeout.id, S.TIMED_OUT)
        assert done.error is not None and done.error.code == "step-timed-out"
        assert done.error.message == "step nap timed-out after 1 attempt: timed out after 0.2 s"
        done = await wait_state(engine, job_timeout.id, S.TIMED_OUT)
        assert done.error is not None and done.error.code == "timeout"
        assert done.error.message == "the job exceeded its timeout of 0.2 s in step nap"


async def test_a_failed_start_script_stays_the_reason_when_the_end_script_fails_too(
    config: Config,
) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("bad-start"))
        done = await wait_state(engine, job.id, S.FAILED)
        assert done.error is not None and done.error.code == "start-script-failed"
        assert "start script" in done.error.message and "exit" in done.error.message
        assert "the end script failed too: end script" in done.error.message
        # A run that succeeded keeps its outcome; the end script's failure is the overlay.
        job = await engine.submit(spec("bad-end"))
        done = await wait_state(engine, job.id, S.COMPLETED)
        assert done.error is not None and done.error.code == "end-script-failed"


BOOM = """
[workflows.boom]
# The default 2 retries (3 attempts), without the default 5 s backoff that
# only made the test wait 7.5-15 s.
[[workflows.boom.steps]]
name = "explode"
action = "fail"
retry_backoff = 0.05
params = { message = "deck 3 jammed" }
"""


def test_list_show_and_the_api_carry_the_reason() -> None:
    with running_daemon(workflows=BOOM) as daemon:
        done = daemon.cli("submit", "boom", "--wait")
        assert done.returncode == 1, done.stderr
        job_id = done.stdout.strip()
        wait_until(lambda: daemon.cli_json("show", job_id)["state"] == "failed", what="failed")
        error = daemon.cli_json("show", job_id)["error"]
        assert error["code"] == "step-failed"
        assert error["message"].startswith("step explode failed after 3 attempts: ")  # 2 retries
        assert "deck 3 jammed" in error["message"]
        shown = daemon.cli("show", job_id)
        assert "step-failed: step explode failed" in " ".join(shown.stdout.split())
        listed = daemon.cli("list")
        assert "step-failed" in listed.stdout, listed.stdout
        items = daemon.cli_json("list")["items"]
        assert json.dumps(items[0]["error"]).count("deck 3 jammed") == 1, textwrap.shorten(
            str(items), 200
        )
