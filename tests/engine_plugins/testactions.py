"""Actions the engine tests use: each leaves evidence in files so tests can check order."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

import jobd


async def noop(ctx: jobd.ActionContext, **params: Any) -> dict[str, Any] | None:
    return None


async def echo(ctx: jobd.ActionContext, **params: Any) -> dict[str, Any]:
    return {"params": dict(params), "seen_outputs": dict(ctx.outputs)}


async def record(ctx: jobd.ActionContext, log: str, **params: Any) -> dict[str, Any]:
    """Append start/end lines to ``log`` around an optional wait for ``gate`` to exist."""
    path = Path(log)
    with path.open("a") as fh:
        fh.write(json.dumps({"job": ctx.job_id, "ev": "start", "t": time.monotonic()}) + "\n")
    gate = params.get("gate")
    if gate:
        while not Path(gate).exists():
            await anyio.sleep(0.01)
    else:
        await anyio.sleep(float(params.get("hold", 0)))
    with path.open("a") as fh:
        fh.write(json.dumps({"job": ctx.job_id, "ev": "end", "t": time.monotonic()}) + "\n")
    return {"ok": True}


async def flaky(
    ctx: jobd.ActionContext, counter: str, fail_times: int = 1, **params: Any
) -> dict[str, Any]:
    """Fails the first ``fail_times`` attempts (counted in a file), then succeeds."""
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < int(fail_times):
        raise jobd.ActionError(f"flaky failure {n + 1}")
    return {"attempt": ctx.attempt}


async def hang(ctx: jobd.ActionContext, **params: Any) -> None:
    marker = params.get("marker")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    await anyio.sleep(10**6)


async def spawn(ctx: jobd.ActionContext, pidfile: str, **params: Any) -> None:
    """A child that starts a grandchild and waits forever: the timeout must kill both."""
    # Written then renamed: a timeout between the shell's open and its write
    # would otherwise leave an empty pid file for the test to read.
    script = f'sleep 1000 & echo $! > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"; wait'
    await ctx.run_process(["sh", "-c", script])


async def slow_once(ctx: jobd.ActionContext, **params: Any) -> dict[str, Any]:
    """Hangs on its first attempt (until its timeout stops it), returns on the next."""
    if ctx.attempt == 1:
        await anyio.sleep(10**6)
    return {"attempt": ctx.attempt}


async def stubborn(ctx: jobd.ActionContext, marker: str = "", **params: Any) -> dict[str, Any]:
    """Catches its cancellation and returns as if it had finished (a badly written plugin)."""
    try:
        await anyio.sleep(10**6)
    except anyio.get_cancelled_exc_class():
        if marker:
            Path(marker).write_text("cancelled")
    return {"finished": True}


async def say(ctx: jobd.ActionContext, word: str = "hello", **params: Any) -> None:
    """Logs through a plain structlog logger, a stdlib one, and one in a worker thread:
    none of them names the job; the runner's context does."""
    structlog.get_logger("tests.say").info("said", word=word)
    logging.getLogger("tests.say").warning("stdlib said %s", word)
    await anyio.to_thread.run_sync(lambda: structlog.get_logger("tests.say").info("threaded"))


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action("t-noop", noop),
        jobd.Action("t-echo", echo),
        jobd.Action("t-record", record),
        jobd.Action("t-flaky", flaky),
        jobd.Action("t-hang", hang),
        jobd.Action("t-spawn", spawn),
        jobd.Action("t-slow-once", slow_once),
        jobd.Action("t-stubborn", stubborn),
        jobd.Action("t-say", say),
    ]
