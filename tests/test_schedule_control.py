"""Schedule control: run now, pause and resume (kept in the store, shown, surviving a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from jobd.config import ScheduleConfig
from jobd.core.errors import NotApplicable, NotFound
from jobd.core.states import JobState
from tests import e2e
from tests.enginekit import make_config, running_engine, step, workflow
from tests.test_schedules import scheduled_jobs

S = JobState


async def test_a_paused_schedule_does_not_fire_until_resumed(tmp_path: Path) -> None:
    flows = [workflow("noop", step("a", "t-noop")), workflow("hang", step("h", "t-hang"))]
    schedules = (
        ScheduleConfig(name="hourly", workflow="noop", interval=3600),
        ScheduleConfig(name="busy", workflow="hang", interval=3600, overlap="skip"),
    )
    config = make_config(tmp_path, flows, schedules=schedules)
    async with running_engine(config) as engine:
        hourly = engine.schedules.find("hourly")
        shown = await engine.pause_schedule("hourly", True, actor="cli")
        assert shown["paused"] is True and shown["next_fire_at"] is None
        assert shown["recent"][0]["kind"] == "paused"
        await engine.schedules.fire(hourly, engine.clock())  # the timer's firing: left out
        assert await scheduled_jobs(engine, "hourly") == []
        by_hand = await engine.run_schedule("hourly", actor="cli")  # by hand: fires anyway
        assert by_hand.spec.schedule == "hourly" and by_hand.history[0].actor == "cli"
        again = await engine.pause_schedule("hourly", True)  # already paused: no change
        assert again["paused_at"] == shown["paused_at"]
        resumed = await engine.pause_schedule("hourly", False)
        assert resumed["paused"] is False and resumed["next_fire_at"] is not None
        await engine.schedules.fire(hourly, engine.clock())
        assert len(await scheduled_jobs(engine, "hourly")) == 2
        with pytest.raises(NotFound, match="schedule 'nope' \\(configured: hourly, busy\\)"):
            await engine.run_schedule("nope")
        await engine.run_schedule("busy")  # its job hangs, so the next firing is skipped
        with pytest.raises(NotApplicable, match="still running"):
            await engine.run_schedule("busy")


SCHEDULE = """
[[schedules]]
name = "nightly"
workflow = "demo"
cron = "0 2 * * *"
params = { who = "night" }
"""


def control(client: httpx.Client, action: str, name: str = "nightly") -> httpx.Response:
    return client.post(f"/v1/schedules/{name}/{action}")


def listed(client: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/v1/schedules").json()["items"][0]
    return found


def http(daemon: e2e.Daemon) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(daemon.layout.socket))
    return httpx.Client(transport=transport, base_url="http://jobd", timeout=30)


def test_pause_survives_a_restart_and_run_fires_now(base: Path) -> None:
    layout = e2e.write_layout(base, workflows=e2e.DEMO_WORKFLOWS + SCHEDULE)
    daemon = e2e.start_daemon(layout)
    try:
        with http(daemon) as client:
            assert listed(client)["paused"] is False
            paused = control(client, "pause")
            assert paused.status_code == 200, paused.text
            assert paused.json()["paused"] is True and paused.json()["next_fire_at"] is None
        assert daemon.stop() == 0
        daemon.notify.close()
        daemon = e2e.start_daemon(layout)
        with http(daemon) as client:
            shown = listed(client)
            assert shown["paused"] is True and shown["paused_at"] == paused.json()["paused_at"]
            fired = control(client, "run")
            assert fired.status_code == 201, fired.text
            job = fired.json()
            assert job["schedule"] == "nightly" and job["params"] == {"who": "night"}
            assert fired.headers["location"] == f"/v1/jobs/{job['id']}"
            assert listed(client)["last_job_id"] == job["id"]
            resumed = control(client, "resume")
            assert resumed.status_code == 200 and resumed.json()["paused"] is False
            for action, name, code in (
                ("run", "nope", "not-found"),
                ("pause", "nope", "not-found"),
                ("explode", "nightly", "unknown-operation"),
            ):
                response = control(client, action, name)
                assert response.status_code == 404, response.text
                assert response.json()["error"]["code"] == code
        assert daemon.stop() == 0
        daemon.notify.close()
        daemon = e2e.start_daemon(layout)
        with http(daemon) as client:
            assert listed(client)["paused"] is False
    finally:
        if daemon.alive:
            daemon.stop()
        daemon.notify.close()
