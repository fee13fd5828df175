"""jobd.logging: one shape for structlog and stdlib lines, job log capture, reconfiguration."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from structlog.contextvars import bound_contextvars

from jobd import logging as jlog
from jobd.config import LoggingConfig
from jobd.core.states import JobState
from tests.conftest import logging_restored
from tests.enginekit import make_config, running_engine, spec, step, wait_state, workflow


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave structlog and the root logger as we found them for the other test modules."""
    with logging_restored():
        yield


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def configure(fmt: str = "auto", level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    jlog.configure_logging(LoggingConfig(format=fmt, level=level), stream=stream)  # type: ignore[arg-type]
    return stream


def test_structlog_and_stdlib_lines_share_the_json_shape() -> None:
    stream = configure("auto")  # a StringIO is not a tty: JSON
    structlog.get_logger("jobd.test").info("hello", n=1)
    logging.getLogger("apscheduler.scheduler").warning("missed %s", "run")
    native, foreign = lines(stream)
    assert native["event"] == "hello" and native["n"] == 1 and native["level"] == "info"
    assert foreign["event"] == "missed run" and foreign["level"] == "warning"
    assert foreign["logger"] == "apscheduler.scheduler" and native["logger"] == "jobd.test"
    for line in (native, foreign):
        stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        offset = stamp.utcoffset()
        assert offset is not None and offset.total_seconds() == 0


def test_contextvars_appear_on_every_line() -> None:
    stream = configure("json")
    with bound_contextvars(job_id=7, step="verify"):
        structlog.get_logger().info("inside")
        logging.getLogger("somelib").warning("stdlib inside")
    structlog.get_logger().info("outside")
    inside, stdlib_inside, outside = lines(stream)
    assert (inside["job_id"], inside["step"]) == (7, "verify")
    assert (stdlib_inside["job_id"], stdlib_inside["step"]) == (7, "verify")
    assert "job_id" not in outside


def test_level_filters_daemon_lines() -> None:
    stream = configure("json", "warning")
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    logging.getLogger("x").info("stdlib info")
    assert [line["event"] for line in lines(stream)] == ["w"]


def test_console_format_is_not_json() -> None:
    stream = configure("console")
    structlog.get_logger().info("for humans", key="value")
    text = stream.getvalue()
    assert "for humans" in text and "key" in text and "value" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_exceptions_are_rendered_in_json() -> None:
    stream = configure("json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("it failed")
    (line,) = lines(stream)
    assert line["level"] == "error" and "RuntimeError: boom" in line["exception"]


def test_uvicorn_access_log_is_quiet_by_default() -> None:
    stream = configure("json", "info")
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("uvicorn.error").info("Started server process")
    assert [line["event"] for line in lines(stream)] == ["Started server process"]


def test_reconfigure_replaces_the_handler_and_level() -> None:
    first = configure("json", "info")
    second = configure("json", "debug")
    structlog.get_logger().debug("after reload")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["after reload"]
    ours = [h for h in logging.getLogger().handlers if h is jlog._state.handler]
    assert len(ours) == 1


Captured = list[tuple[int, str | None, str, str, float]]


@pytest.fixture
def captured() -> Captured:
    got: Captured = []
    jlog.set_job_log_sink(lambda *args: got.append(args))
    return got


def test_sink_receives_job_lines_with_their_context(captured: Captured) -> None:
    configure("json")
    log = structlog.get_logger()
    log.info("not a job line")
    with bound_contextvars(job_id=12, step="transcode"):
        log.info("step started", attempt=2, argv=["ffmpeg", "-i", "a b.mxf"])
    log.warning("script output", job_id=13, line="done")
    assert [c[:3] for c in captured] == [(12, "transcode", "info"), (13, None, "warning")]
    assert captured[0][3] == 'step started attempt=2 argv=["ffmpeg", "-i", "a b.mxf"]'
    assert captured[1][3] == "script output line=done"
    assert all(isinstance(c[4], float) and c[4] > 0 for c in captured)


def test_job_lines_are_captured_even_when_the_daemon_is_quiet(
    captured: Captured,
) -> None:
    stream = configure("json", "warning")
    structlog.get_logger().info("progress", job_id=3)
    structlog.get_logger().debug("too fine", job_id=3)
    assert [c[3] for c in captured] == ["progress"]
    assert stream.getvalue() == ""


def test_stdlib_lines_inside_a_job_are_captured(captured: Captured) -> None:
    configure("json")
    with bound_contextvars(job_id=5):
        logging.getLogger("somelib").warning("careful %d", 3)
    assert [(c[0], c[2], c[3]) for c in captured] == [(5, "warning", "careful 3")]


def test_a_raising_sink_never_breaks_logging() -> None:
    stream = configure("json")

    def broken(*_args: object) -> None:
        raise RuntimeError("sink down")

    jlog.set_job_log_sink(broken)
    structlog.get_logger().info("still logged", job_id=1)
    structlog.get_logger().info("also fine", job_id="not-a-number")
    assert [line["event"] for line in lines(stream)] == ["still logged", "also fine"]


def test_a_sink_that_logs_is_not_recaptured(captured: Captured) -> None:
    configure("json")
    calls: list[str] = []

    def chatty(job_id: int, step: str | None, level: str, message: str, at: float) -> None:
        calls.append(message)
        structlog.get_logger().info("sink saw a line", job_id=job_id)

    jlog.set_job_log_sink(chatty)
    structlog.get_logger().info("original", job_id=1)
    assert calls == ["original"]


def test_long_job_messages_are_cut(captured: Captured) -> None:
    configure("json")
    structlog.get_logger().info("big", job_id=1, blob="x" * 100_000)
    assert len(captured[0][3]) == jlog.MAX_JOB_MESSAGE


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        jlog.level_number("loud")


async def test_lines_from_other_threads_reach_the_sink_on_its_loop() -> None:
    configure("json")
    got: list[tuple[int, str, int]] = []
    arrived = anyio.Event()

    def sink(job_id: int, step: str | None, level: str, message: str, at: float) -> None:
        got.append((job_id, message, threading.get_ident()))
        arrived.set()

    jlog.set_job_log_sink(sink)  # installed on this event loop
    loop_thread = threading.get_ident()

    def in_a_worker_thread() -> int:
        structlog.get_logger().info("from a thread", job_id=9)
        return threading.get_ident()

    worker = await anyio.to_thread.run_sync(in_a_worker_thread)
    with anyio.fail_after(10):
        await arrived.wait()
    assert worker != loop_thread
    assert got == [(9, "from a thread", loop_thread)]


def test_debug_brings_the_quiet_loggers_back() -> None:
    stream = configure("json", "debug")
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("aiosqlite").debug("executing")  # stays at INFO: one line per statement
    assert [line["event"] for line in lines(stream)] == ["GET / 200"]


def test_the_running_step_is_on_every_line_logged_in_its_context(captured: Captured) -> None:
    stream = configure("json")
    token = jlog.RUNNING_STEP.set((9, "wrap"))
    try:
        structlog.get_logger().info("inside")
        logging.getLogger("somelib").warning("stdlib inside")
        structlog.get_logger().info("its own", job_id=10, step="other")
    finally:
        jlog.RUNNING_STEP.reset(token)
    structlog.get_logger().info("outside")
    assert [c[:4] for c in captured] == [
        (9, "wrap", "info", "inside"),
        (9, "wrap", "warning", "stdlib inside"),
        (10, "other", "info", "its own"),
    ]
    inside, stdlib_inside, _, outside = lines(stream)
    assert (inside["job_id"], inside["step"]) == (9, "wrap")
    assert (stdlib_inside["job_id"], stdlib_inside["step"]) == (9, "wrap")
    assert "job_id" not in outside and "step" not in outside


async def test_an_actions_own_log_lines_reach_its_jobs_log(tmp_path: Path) -> None:
    configure("json")
    config = make_config(tmp_path, [workflow("talk", step("speak", "t-say"))])
    async with running_engine(config) as engine:
        job = await engine.submit(spec("talk", params={}))
        await wait_state(engine, job.id, JobState.COMPLETED)
        await engine.store.flush()
        got = await engine.store.job_log(job.id, 0, 100)
    said = [(line["step"], line["level"], line["message"]) for line in got]
    assert ("speak", "info", "said word=hello") in said
    assert ("speak", "warning", "stdlib said hello") in said
    assert ("speak", "info", "threaded") in said
