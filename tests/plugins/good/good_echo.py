"""Test plugin that works: an ``echo`` action, a validator and observers.

Observers append JSON lines to the file named by ``$JOBD_TEST_EVENTS`` (when set),
so a test (or a worker process) can see which hooks ran and with what.
"""

from __future__ import annotations

import json
import os

import jobd


def _record(entry: dict) -> None:
    path = os.environ.get("JOBD_TEST_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


async def echo(ctx: jobd.ActionContext, **params: object) -> dict:
    """Return the params and a little of the context, and log one line."""
    ctx.log.info("echoing", count=len(params))
    return {"echo": params, "job_id": ctx.job_id, "step": ctx.step, "pid": os.getpid()}


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [jobd.Action("echo", echo, "Return the params as outputs")]


@jobd.hookimpl
def jobd_validate_job(job: dict) -> list[str]:
    if job.get("params", {}).get("reject"):
        return ["good_echo refuses jobs with params.reject"]
    return []


@jobd.hookimpl
def jobd_job_event(job: dict, event: dict) -> None:
    _record({"hook": "job_event", "job_id": job.get("id"), "event": event})


@jobd.hookimpl
def jobd_startup(config: object) -> None:
    _record({"hook": "startup", "config": type(config).__name__})


@jobd.hookimpl
def jobd_shutdown() -> None:
    _record({"hook": "shutdown"})
