"""The HTTP API against the real engine: a real SQLite file, real plugins, real runs.

Requests go through ``httpx.ASGITransport``; the event stream (which that
transport would buffer forever) is driven over raw ASGI by :func:`open_stream`.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from jobd import logging as jlog
from jobd.config import Config, LoggingConfig, PoolConfig, ResourceConfig
from jobd.core.errors import ConfigError
from jobd.core.states import PUBLIC_OPERATIONS, JobState
from jobd.engine import Engine
from jobd.service.api import MAX_BODY, create_app, end_event_streams
from tests.conftest import logging_restored
from tests.enginekit import make_config, running_engine, step, wait_state, workflow

S = JobState
TOKEN = "s3cret-token"
FAR = "2099-01-01T10:00:00Z"
FAR_END = "2099-01-01T11:00:00Z"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    flows = [
        workflow("quick", step("nap", "sleep", params={"seconds": 0})),
        workflow("hold", step("nap", "sleep", params={"seconds": "{seconds}"})),
        workflow("boom", step("explode", "fail", params={"message": "kaboom"})),
        workflow(
            "say",
            step(
                "echo",
                "exec",
                params={"argv": [sys.executable, "-c", "print('{word}')"], "cwd": str(tmp_path)},
            ),
        ),
    ]
    return make_config(
        tmp_path,
        flows,
        resources={"enc-1": ResourceConfig("enc-1"), "enc-2": ResourceConfig("enc-2")},
        pools={"encoders": PoolConfig("encoders", ("enc-1", "enc-2"))},
    )


@asynccontextmanager
async def api(config: Config, **kw: Any) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    """The real engine, an app on it, and a client for that app."""
    async with running_engine(config) as engine:
        app = create_app(engine, version="9.9.9", started_at=time.time() - 5, **kw)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobd") as client:
            client.app = app  # the event-stream tests drive it over raw ASGI
            yield engine, client


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the one error shape; returns the ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def is_iso_utc(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).utcoffset() is not None


async def wait_done(engine: Engine, job_id: int) -> None:
    await wait_state(engine, job_id, {S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELED})


# --------------------------------------------------------------------------- happy paths


async def test_health_needs_nothing_and_openapi_lists_the_routes(config: Config) -> None:
    async with api(config) as (_, client):
        health = (await client.get("/v1/health")).json()
        assert health["status"] == "ok" and health["version"] == "9.9.9"
        assert health["uptime"] >= 5
        spec = (await client.get("/openapi.json")).json()
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/{operation}",
        "/v1/jobs/{job_id}/log",
        "/v1/queue",
        "/v1/locks",
        "/v1/resources",
        "/v1/bookings",
        "/v1/schedules",
        "/v1/plugins",
        "/v1/events",
        "/v1/reload",
        "/v1/health",
        "/metrics",
        "/v1/batch/jobs",
        "/v1/batch/{operation}",
        "/v1/schedules/{name}/{action}",
    ):
        assert path in spec["paths"], path
    assert "SubmitBody" in spec["components"]["schemas"]
    batch = spec["paths"]["/v1/batch/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["properties"]["jobs"]["items"] == {
        "$ref": "#/components/schemas/SubmitBody"
    }


async def test_submit_runs_and_the_job_reads_back_with_iso_times(config: Config) -> None:
    async with api(config) as (engine, client):
        response = await client.post(
            "/v1/jobs",
            json={
                "workflow": "say",
                "params": {"word": "hello"},
                "name": "greeting",
                "priority": 5,
                "assets": ["tape-1"],
                "timeout": 60,
            },
        )
        assert response.status_code == 201, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        await wait_done(engine, job["id"])
        done = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert done["state"] == "completed" and done["error"] is None
    assert done["name"] == "greeting" and done["priority"] == 5 and done["assets"] == ["tape-1"]
    for key in (
        "id",
        "name",
        "workflow",
        "state",
        "error",
        "priority",
        "params",
        "assets",
        "shared_assets",
        "start_at",
        "end_at",
        "preroll",
        "postroll",
        "progress",
        "created_at",
        "updated_at",
        "steps",
        "reservations",
        "history",
    ):
        assert key in done, key
    assert is_iso_utc(done["created_at"]) and is_iso_utc(done["updated_at"])
    (only,) = done["steps"]
    assert only["state"] == "completed" and only["outputs"]["stdout"].strip() == "hello"
    assert is_iso_utc(only["started_at"]) and is_iso_utc(only["ended_at"])
    assert [h["to"] for h in done["history"]] == ["confirmed", "queued", "running", "completed"]
    assert all(is_iso_utc(h["at"]) for h in done["history"])
    assert done["history"][0]["actor"] == "api"


async def test_times_in_other_zones_are_stored_as_the_same_instant(config: Config) -> None:
    async with api(config) as (_, client):
        job = (
            await client.post(
                "/v1/jobs",
                json={
                    "workflow": "quick",
                    "state": "tentative",
                    "resources": ["enc-1"],
                    "start_at": "2099-01-01T11:00:00+01:00",
                    "end_at": FAR_END,
                    "preroll": 60,
                    "postroll": 30,
                },
            )
        ).json()
    assert job["state"] == "tentative"
    assert job["start_at"] == "2099-01-01T10:00:00+00:00"
    (res,) = job["reservations"]
    assert res["resource"] == "enc-1"
    assert res["start"] == "2099-01-01T09:59:00+00:00" and res["end"] == "2099-01-01T11:00:30+00:00"


async def test_list_is_newest_first_filtered_and_paginated(config: Config) -> None:
    async with api(config) as (_, client):
        ids = [
            (await client.post("/v1/jobs", json={"workflow": "quick", "state": "draft"})).json()[
                "id"
            ]
            for _ in range(3)
        ]
        tentative = (
            await client.post(
                "/v1/jobs", json={"workflow": "quick", "state": "tentative", "start_at": FAR}
            )
        ).json()["id"]
        first = (await client.get("/v1/jobs", params={"limit": 2})).json()
        rest = (await client.get("/v1/jobs", params={"cursor": first["next_cursor"]})).json()
        drafts = (await client.get("/v1/jobs", params={"state": "draft"})).json()
        both = (await client.get("/v1/jobs?state=draft&state=tentative")).json()
        comma = (await client.get("/v1/jobs?state=draft,tentative")).json()
        bad = await client.get("/v1/jobs", params={"state": "sleepy"})
    assert [j["id"] for j in first["items"]] == [tentative, ids[2]]
    assert [j["id"] for j in rest["items"]] == [ids[1], ids[0]] and rest["next_cursor"] is None
    assert [j["id"] for j in drafts["items"]] == ids[::-1]
    assert len(both["items"]) == len(comma["items"]) == 4
    assert "sleepy" in assert_error(bad, 400, "invalid")["message"]


async def test_operations_follow_the_state_table(config: Config) -> None:
    async with api(config) as (_, client):
        job_id = (
            await client.post(
                "/v1/jobs", json={"workflow": "quick", "state": "draft", "start_at": FAR}
            )
        ).json()["id"]

        async def op(name: str) -> httpx.Response:
            return await client.post(f"/v1/jobs/{job_id}/{name}")

        assert (await op("tentative")).json()["state"] == "tentative"
        assert (await op("confirm")).json()["state"] == "confirmed"
        assert (await op("unconfirm")).json()["state"] == "tentative"
        refused = assert_error(await op("invoiced"), 409, "invalid-transition")
        assert "tentative" in refused["message"] and "confirm" in refused["message"]
        assert (await op("cancel")).json()["state"] == "canceled"
        again = await op("resubmit")
        assert again.status_code == 201 and again.json()["id"] != job_id
        assert again.json()["state"] == "draft"  # the same spec, submitted state included
        assert (await op("invoice-ready")).json()["state"] == "ready-for-invoice"
        assert (await op("invoiced")).json()["state"] == "invoiced"
        unknown = assert_error(await op("explode"), 404, "unknown-operation")
        assert unknown["details"]["operations"] == list(PUBLIC_OPERATIONS)
        history = (await client.get(f"/v1/jobs/{job_id}")).json()["history"]
    assert [h["to"] for h in history][-3:] == ["canceled", "ready-for-invoice", "invoiced"]


async def test_delete_and_post_delete_remove_a_job(config: Config) -> None:
    async with api(config) as (_, client):
        ids = [
            (await client.post("/v1/jobs", json={"workflow": "quick", "state": "draft"})).json()[
                "id"
            ]
            for _ in range(2)
        ]
        assert (await client.delete(f"/v1/jobs/{ids[0]}")).status_code == 204
        assert (await client.post(f"/v1/jobs/{ids[1]}/delete")).status_code == 204
        for job_id in ids:
            assert_error(await client.get(f"/v1/jobs/{job_id}"), 404, "not-found")
        assert_error(await client.delete(f"/v1/jobs/{ids[0]}"), 404, "not-found")


async def test_patch_changes_only_the_fields_sent(config: Config) -> None:
    async with api(config) as (_, client):
        job = (
            await client.post(
                "/v1/jobs",
                json={
                    "workflow": "quick",
                    "state": "draft",
                    "name": "a",
                    "priority": 1,
                    "start_at": FAR,
                    "timeout": 10,
                },
            )
        ).json()
        url = f"/v1/jobs/{job['id']}"
        edited = await client.patch(
            url,
            json={
                "priority": 7,
                "start_at": "2099-02-01T00:00Z",
                "timeout": None,
                "assets": ["x", "y"],
            },
        )
        assert edited.status_code == 200, edited.text
        assert_error(await client.patch(url, json={"priority": None}), 400, "invalid")
        assert_error(await client.patch(url, json={"workflow": "say"}), 400, "invalid")
        assert_error(await client.patch(url, json={"end_at": "2099-02-01T00:00"}), 400)
        after = (await client.get(url)).json()
    assert after["priority"] == 7 and after["name"] == "a" and after["timeout"] is None
    assert after["start_at"] == "2099-02-01T00:00:00+00:00" and after["assets"] == ["x", "y"]


@pytest.fixture
def job_logging() -> Iterator[None]:
    """Configure jobd's logging (job lines reach the store only through it), then restore."""
    with logging_restored():
        jlog.configure_logging(LoggingConfig(format="json", level="info"), stream=io.StringIO())
        yield


@pytest.mark.usefixtures("job_logging")
async def test_log_lines_of_a_failed_job(config: Config) -> None:
    async with api(config) as (engine, client):
        job_id = (await client.post("/v1/jobs", json={"workflow": "boom"})).json()["id"]
        await wait_done(engine, job_id)
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        log = (await client.get(f"/v1/jobs/{job_id}/log")).json()
        later = (
            await client.get(f"/v1/jobs/{job_id}/log", params={"after": log["items"][-1]["seq"]})
        ).json()
        assert_error(await client.get(f"/v1/jobs/{job_id}/log", params={"after": -1}), 400)
    assert job["state"] == "failed" and "kaboom" in job["steps"][0]["error"]
    assert log["items"] and later["items"] == [] and log["next_cursor"] is None
    assert all({"seq", "at", "level", "message"} <= set(line) for line in log["items"])
    assert all(is_iso_utc(line["at"]) for line in log["items"])
    assert any("kaboom" in line["message"] for line in log["items"])


async def test_inspection_routes(config: Config) -> None:
    async with api(config) as (engine, client):
        booked = (
            await client.post(
                "/v1/jobs",
                json={
                    "workflow": "quick",
                    "state": "tentative",
                    "pools": ["encoders"],
                    "start_at": FAR,
                    "end_at": FAR_END,
                },
            )
        ).json()
        holder = (
            await client.post(
                "/v1/jobs",
                json={"workflow": "hold", "params": {"seconds": "30"}, "assets": ["vt-1"]},
            )
        ).json()
        waiter = (
            await client.post("/v1/jobs", json={"workflow": "quick", "assets": ["vt-1"]})
        ).json()
        await wait_state(engine, waiter["id"], S.WAITING_FOR_LOCK)
        queue = (await client.get("/v1/queue")).json()
        locks = (await client.get("/v1/locks")).json()
        resources = (await client.get("/v1/resources")).json()
        bookings = (
            await client.get(
                "/v1/bookings",
                params={"from": "2098-12-31T00:00:00Z", "to": "2099-01-02T00:00:00+02:00"},
            )
        ).json()
        none = (await client.get("/v1/bookings", params={"to": "2000-01-01T00:00Z"})).json()
        schedules = (await client.get("/v1/schedules")).json()
        plugins = (await client.get("/v1/plugins")).json()
        assert_error(await client.get("/v1/bookings", params={"from": "2099-01-01"}), 400)
        await client.post(f"/v1/jobs/{holder['id']}/cancel")
        await wait_done(engine, waiter["id"])
        metrics = (await client.get("/metrics")).text
    assert "jobd_lock_wait_seconds_count 1.0" in metrics
    assert queue["running"] == [holder["id"]] and queue["waiting_for_lock"] == [waiter["id"]]
    assert queue["workers"] == 4 and queue["busy_workers"] == 1
    (lock,) = locks["items"]
    assert lock["asset"] == "vt-1" and lock["holders"][0]["job_id"] == holder["id"]
    assert [w["job_id"] for w in lock["waiters"]] == [waiter["id"]]
    assert {r["name"] for r in resources["items"]} == {"enc-1", "enc-2"}
    (booking,) = bookings["items"]
    assert booking["job_id"] == booked["id"] and booking["start"] == "2099-01-01T10:00:00+00:00"
    assert none["items"] == []
    assert schedules == {"items": [], "next_cursor": None}
    assert {"sleep", "fail", "exec"} <= {a["name"] for a in plugins["actions"]}


async def test_metrics_count_transitions_durations_and_queue_gauges(config: Config) -> None:
    async with api(config) as (engine, client):
        job_id = (await client.post("/v1/jobs", json={"workflow": "quick"})).json()["id"]
        await wait_done(engine, job_id)
        # The store may show the job completed a moment before the loop has the writer's
        # answer and tells the listeners (the metrics): wait for that too.
        response = await client.get("/metrics")
        with anyio.fail_after(30):
            while 'to="completed"} 1.0' not in response.text or "busy 0.0" not in response.text:
                await engine.store.flush()
                response = await client.get("/metrics")
    text = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'jobd_transitions_total{from="running",to="completed"} 1.0' in text
    assert 'jobd_job_duration_seconds_count{outcome="completed"} 1.0' in text
    assert 'jobd_step_duration_seconds_count{outcome="completed"} 1.0' in text
    assert "jobd_queue_capacity 100.0" in text and "jobd_workers 4.0" in text
    assert "jobd_workers_busy 0.0" in text


# --------------------------------------------------------------------------- bad input

BAD_SUBMITS: list[tuple[str, dict[str, Any], int, str, str]] = [
    # (label, request kwargs, status, error code, text the message must contain)
    (
        "malformed JSON",
        {"content": b'{"workflow": ', "headers": {"content-type": "application/json"}},
        400,
        "invalid-json",
        "malformed JSON",
    ),
    ("not an object", {"json": ["quick"]}, 400, "invalid", "body"),
    ("no body", {}, 400, "invalid", "body"),
    (
        "form body",
        {
            "content": b"workflow=quick",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        400,
        "invalid",
        "JSON",
    ),
    (
        "string priority",
        {"json": {"workflow": "quick", "priority": "5"}},
        400,
        "invalid",
        "body.priority",
    ),
    (
        "float priority",
        {"json": {"workflow": "quick", "priority": 1.5}},
        400,
        "invalid",
        "body.priority",
    ),
    (
        "bool timeout",
        {"json": {"workflow": "quick", "timeout": True}},
        400,
        "invalid",
        "body.timeout",
    ),
    ("params list", {"json": {"workflow": "quick", "params": []}}, 400, "invalid", "body.params"),
    (
        "assets string",
        {"json": {"workflow": "quick", "assets": "vt-1"}},
        400,
        "invalid",
        "body.assets",
    ),
    (
        "asset number",
        {"json": {"workflow": "quick", "assets": [1]}},
        400,
        "invalid",
        "body.assets.0",
    ),
    (
        "negative preroll",
        {"json": {"workflow": "quick", "preroll": -1}},
        400,
        "invalid",
        "body.preroll",
    ),
    (
        "unknown field",
        {"json": {"workflow": "quick", "priorty": 3}},
        400,
        "invalid",
        "body.priorty: unknown field",
    ),
    ("missing workflow", {"json": {"params": {}}}, 400, "invalid", "body.workflow"),
    ("unknown workflow", {"json": {"workflow": "nope"}}, 400, "invalid", "nope"),
    (
        "unknown resource",
        {"json": {"workflow": "quick", "resources": ["vtr-9"], "start_at": FAR, "end_at": FAR_END}},
        400,
        "invalid",
        "vtr-9",
    ),
    (
        "unknown resource in a draft",
        {
            "json": {
                "workflow": "quick",
                "state": "draft",
                "resources": ["vtr-9"],
                "start_at": FAR,
                "end_at": FAR_END,
            }
        },
        400,
        "invalid",
        "unknown resource 'vtr-9'",
    ),
    (
        "unknown pool in a draft",
        {
            "json": {
                "workflow": "quick",
                "state": "draft",
                "pools": ["nopool"],
                "start_at": FAR,
                "end_at": FAR_END,
            }
        },
        400,
        "invalid",
        "unknown pool 'nopool'",
    ),
    (
        "zone-less time",
        {"json": {"workflow": "quick", "start_at": "2026-01-01T10:00"}},
        400,
        "invalid",
        "time '2026-01-01T10:00' has no zone; add Z or +01:00",
    ),
    (
        "garbage time",
        {"json": {"workflow": "quick", "end_at": "tomorrow"}},
        400,
        "invalid",
        "end_at",
    ),
    (
        "priority too high",
        {"json": {"workflow": "quick", "priority": 1001}},
        400,
        "invalid",
        "body.priority: Input should be less than or equal to 1000",
    ),
    (
        "priority too low",
        {"json": {"workflow": "quick", "priority": -1001}},
        400,
        "invalid",
        "body.priority",
    ),
    (
        "running state",
        {"json": {"workflow": "quick", "state": "running"}},
        400,
        "invalid",
        "body.state",
    ),
    (
        "NaN param",
        {
            "content": b'{"workflow": "quick", "params": {"x": NaN}}',
            "headers": {"content-type": "application/json"},
        },
        400,
        "invalid",
        "NaN",
    ),
    (
        "Infinity timeout",
        {
            "content": b'{"workflow": "quick", "timeout": Infinity}',
            "headers": {"content-type": "application/json"},
        },
        400,
        "invalid",
        "body.timeout",
    ),
    (
        "lone surrogate name",
        {
            "content": b'{"workflow": "quick", "name": "\\ud800"}',
            "headers": {"content-type": "application/json"},
        },
        400,
        "invalid",
        "body.name",
    ),
    (
        "lone surrogate param",
        {
            "content": b'{"workflow": "quick", "params": {"x": "\\udc00"}}',
            "headers": {"content-type": "application/json"},
        },
        400,
        "invalid",
        "surrogate",
    ),
    (
        "deep nesting",
        {
            "content": b'{"workflow": "quick", "params": {"x": ' + b"[" * 100_000,
            "headers": {"content-type": "application/json"},
        },
        400,
        "",
        "",
    ),
    (
        "huge integer",
        {
            "content": b'{"workflow": "quick", "params": {"x": 1' + b"0" * 5000 + b"}}",
            "headers": {"content-type": "application/json"},
        },
        400,
        "",
        "",
    ),
    (
        "one megabyte",
        {"json": {"workflow": "quick", "params": {"x": "a" * MAX_BODY}}},
        413,
        "too-large",
        "larger than",
    ),
]


@pytest.mark.parametrize("case", BAD_SUBMITS, ids=[case[0] for case in BAD_SUBMITS])
async def test_bad_submissions_are_4xx_and_leave_jobs_intact(
    config: Config, case: tuple[str, dict[str, Any], int, str, str]
) -> None:
    _, kwargs, status, code, text = case
    async with api(config) as (_, client):
        kept = await client.post("/v1/jobs", json={"workflow": "quick", "state": "draft"})
        response = await client.post("/v1/jobs", **kwargs)
        error = assert_error(response, status, code or None)
        assert text in error["message"]
        jobs = (await client.get("/v1/jobs")).json()["items"]
    assert [job["id"] for job in jobs] == [kept.json()["id"]]
    assert jobs[0]["state"] == "draft"


async def test_a_body_streamed_without_length_is_cut_at_the_cap(config: Config) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"workflow": "quick", "params": {"x": "'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"}}'

    async with api(config) as (_, client):
        response = await client.post(
            "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "too-large")
        assert (await client.get("/v1/jobs")).json()["items"] == []


async def test_bad_paths_methods_and_queries(config: Config) -> None:
    async with api(config) as (_, client):
        job_id = (
            await client.post("/v1/jobs", json={"workflow": "quick", "state": "draft"})
        ).json()["id"]
        missing = job_id + 1000
        for method, url, status, code in [
            ("GET", f"/v1/jobs/{missing}", 404, "not-found"),
            ("PATCH", f"/v1/jobs/{missing}", 404, "not-found"),
            ("DELETE", f"/v1/jobs/{missing}", 404, "not-found"),
            ("POST", f"/v1/jobs/{missing}/cancel", 404, "not-found"),
            ("GET", f"/v1/jobs/{missing}/log", 404, "not-found"),
            ("POST", f"/v1/jobs/{job_id}/frobnicate", 404, "unknown-operation"),
            # A path that names no job is 404 whatever its form (SPEC §7).
            ("GET", "/v1/jobs/abc", 404, "not-found"),
            ("GET", f"/v1/jobs/{2**70}", 404, "not-found"),
            ("GET", "/v1/jobs/0", 404, "not-found"),
            ("GET", "/v1/jobs/-3", 404, "not-found"),
            ("PATCH", "/v1/jobs/abc", 404, "not-found"),
            ("DELETE", "/v1/jobs/1.5", 404, "not-found"),
            ("POST", "/v1/jobs/abc/cancel", 404, "not-found"),
            ("GET", "/v1/jobs/abc/log", 404, "not-found"),
            ("GET", "/v1/jobs?limit=0", 400, "invalid"),
            ("GET", "/v1/jobs?limit=lots", 400, "invalid"),
            ("GET", f"/v1/jobs?cursor={2**70}", 400, "invalid"),
            ("GET", "/v1/events?job=x", 400, "invalid"),
            ("GET", "/v1/jobs?stat=failed", 400, "invalid"),
            ("GET", "/v1/queue?verbose=1", 400, "invalid"),
            ("POST", f"/v1/jobs/{job_id}/cancel?force=1", 400, "invalid"),
            ("GET", "/v1/nothing-here", 404, "not-found"),
            ("PUT", f"/v1/jobs/{job_id}", 405, "method-not-allowed"),
            ("POST", "/v1/queue", 405, "method-not-allowed"),
        ]:
            kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
            response = await client.request(method, url, **kwargs)
            assert_error(response, status, code)
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["state"] == "draft"


async def test_an_unexpected_exception_is_a_logged_500(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api(config) as (engine, client):

        def broken() -> dict[str, Any]:
            raise RuntimeError("queue exploded")

        monkeypatch.setattr(engine, "queue_info", broken)
        with capture_logs() as logs:
            response = await client.get("/v1/queue")
    error = assert_error(response, 500, "internal")
    assert "queue exploded" not in error["message"]  # no internals leak to clients
    assert any(
        entry["event"] == "unhandled error in API" and entry["path"] == "/v1/queue"
        for entry in logs
    )


# --------------------------------------------------------------------------- auth, reload


async def test_token_guards_every_route_but_health(config: Config) -> None:
    async with api(config, token=TOKEN) as (_, client):
        good = {"authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/v1/health")).status_code == 200
        for path in ("/v1/jobs", "/metrics", "/openapi.json", "/v1/nothing"):
            assert_error(await client.get(path), 401, "unauthorized")
        for header in (f"Bearer {TOKEN}x", TOKEN, "Basic czNjcmV0", "Bearer", b"Bearer \xc3\xa9"):
            response = await client.get("/v1/jobs", headers={"authorization": header})
            assert_error(response, 401, "unauthorized")
        assert (await client.get("/v1/jobs", headers=good)).status_code == 200
        assert (
            await client.get("/v1/jobs", headers={"authorization": f"bearer  {TOKEN}"})
        ).status_code == 200
        # An unauthenticated body is refused before anything reads it.
        response = await client.post("/v1/jobs", json={"workflow": "quick"})
        assert_error(response, 401)
        assert (await client.get("/v1/jobs", headers=good)).json()["items"] == []


async def test_reload_reports_warnings_and_refuses_a_bad_config(config: Config) -> None:
    outcomes: list[Any] = [
        {"warnings": ["job 3: resource enc-9 vanished"], "plugins": ["loaded new plugin /p/x.py"]},
        ConfigError("/etc/jobd/jobd.toml", "daemon.workers", "must be > 0"),
    ]

    async def reload() -> dict[str, list[str]]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return dict(outcome)

    async with api(config, reload=reload) as (_, client):
        ok = await client.post("/v1/reload")
        bad = await client.post("/v1/reload")
    assert ok.json() == {
        "reloaded": True,
        "warnings": ["job 3: resource enc-9 vanished"],
        "plugins": ["loaded new plugin /p/x.py"],
    }
    error = assert_error(bad, 400, "config-error")
    assert error["message"] == "/etc/jobd/jobd.toml: daemon.workers: must be > 0"
    async with api(config) as (_, client):
        assert_error(await client.post("/v1/reload"), 409, "reload-unavailable")


# --------------------------------------------------------------------------- events


class Stream:
    """A GET on the raw ASGI app, its messages readable as they are sent."""

    def __init__(self, messages: Any, disconnect: anyio.Event) -> None:
        self._messages, self._disconnect = messages, disconnect
        self.buffer = ""
        self.finished = False

    async def start(self) -> dict[str, Any]:
        message: dict[str, Any] = await self._messages.receive()
        assert message["type"] == "http.response.start"
        return message

    async def read_until(self, text: str) -> str:
        """Read body chunks until ``text`` has arrived; returns everything read so far."""
        while text not in self.buffer:
            assert not self.finished, f"the stream ended before {text!r}"
            await self._read_one()
        return self.buffer

    async def read_to_end(self) -> str:
        while not self.finished:
            await self._read_one()
        return self.buffer

    async def _read_one(self) -> None:
        message = await self._messages.receive()
        assert message["type"] == "http.response.body"
        self.buffer += message.get("body", b"").decode()
        self.finished = not message.get("more_body", False)

    def frames(self) -> list[dict[str, Any]]:
        out = []
        for block in self.buffer.split("\n\n"):
            lines = block.split("\n")
            if lines[0] == "event: job":
                assert lines[1].startswith("data: ") and len(lines) == 2
                out.append(json.loads(lines[1][6:]))
        return out

    def disconnect(self) -> None:
        self._disconnect.set()


@asynccontextmanager
async def open_stream(app: Any, query: str = "") -> AsyncIterator[Stream]:
    send_messages, messages = anyio.create_memory_object_stream[dict[str, Any]](1000)
    disconnect = anyio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"jobd")],
        "client": ("test", 1),
        "server": ("jobd", 80),
    }
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg, send_messages, messages:
            tg.start_soon(app, scope, receive, send_messages.send)
            stream = Stream(messages, disconnect)
            yield stream
            stream.disconnect()
            await stream.read_to_end()  # the app ends its response once the client has gone


async def test_events_stream_every_change_as_sse(config: Config) -> None:
    async with api(config) as (_, client), open_stream(client.app) as stream:
        start = await stream.start()
        assert dict(start["headers"])[b"content-type"].startswith(b"text/event-stream")
        await stream.read_until(": connected\n\n")
        job_id = (await client.post("/v1/jobs", json={"workflow": "quick"})).json()["id"]
        await stream.read_until('"to":"completed"')
    events = [e for e in stream.frames() if e["job_id"] == job_id and e["kind"] == "state"]
    assert [(e["from"], e["to"]) for e in events] == [
        (None, "confirmed"),
        ("confirmed", "queued"),
        ("queued", "running"),
        ("running", "completed"),
    ]
    assert all(is_iso_utc(e["at"]) for e in events)
    assert {"job_id", "kind", "at", "from", "to", "cause", "actor", "step", "data"} == set(
        events[0]
    )


async def test_events_can_be_filtered_by_job_and_keep_alive(config: Config) -> None:
    async with api(config, sse_keepalive=0.05) as (_, client):
        first = (
            await client.post("/v1/jobs", json={"workflow": "quick", "state": "draft"})
        ).json()["id"]
        second = (
            await client.post("/v1/jobs", json={"workflow": "quick", "state": "draft"})
        ).json()["id"]
        async with open_stream(client.app, f"job={second}") as stream:
            await stream.start()
            await stream.read_until(": keepalive\n\n")
            await client.post(f"/v1/jobs/{first}/cancel")
            await client.post(f"/v1/jobs/{second}/cancel")
            await stream.read_until('"to":"canceled"')
    assert {e["job_id"] for e in stream.frames()} == {second}


# --------------------------------------------------------------------------- metrics unit


class FakeQueue:
    def __init__(self) -> None:
        self.broken = False

    def queue_info(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("engine stopping")
        return {
            "capacity": 10,
            "queued": [4, 5],
            "pending": 7,
            "running": [1],
            "waiting_for_lock": [2, 3],
            "workers": 2,
            "busy_workers": 1,
        }


def test_metrics_measure_lock_waits_runs_and_steps_from_events() -> None:
    from jobd.core.events import JobEvent
    from jobd.service.metrics import Metrics

    source = FakeQueue()
    metrics, other = Metrics(source), Metrics(source)  # own registries: several per process
    for event in [
        JobEvent(1, "state", 10.0, S.QUEUED, S.WAITING_FOR_LOCK),
        JobEvent(1, "state", 13.0, S.WAITING_FOR_LOCK, S.RUNNING),
        JobEvent(
            1,
            "step",
            14.0,
            S.RUNNING,
            S.RUNNING,
            step="a",
            data={"state": "soft-failed", "duration": 0.4},
        ),
        JobEvent(
            1,
            "step",
            15.0,
            S.RUNNING,
            S.RUNNING,
            step="a",
            data={"state": "completed", "duration": 0.2},
        ),
        JobEvent(1, "state", 20.0, S.RUNNING, S.CANCEL_REQUESTED),
        JobEvent(1, "state", 21.0, S.CANCEL_REQUESTED, S.CANCELED),
        JobEvent(2, "state", 30.0, S.QUEUED, S.RUNNING),
        JobEvent(2, "state", 31.0, S.RUNNING, S.PAUSED),  # paused runs are not measured
        JobEvent(3, "step", 32.0, data=None),  # tolerated
    ]:
        metrics.observe(event)
    text, content_type = metrics.render()
    body = text.decode()
    assert content_type.startswith("text/plain")
    assert "jobd_lock_wait_seconds_sum 3.0" in body
    assert 'jobd_job_duration_seconds_sum{outcome="canceled"} 8.0' in body
    assert 'jobd_job_duration_seconds_count{outcome="completed"}' not in body
    assert 'jobd_step_duration_seconds_count{outcome="soft-failed"} 1.0' in body
    assert 'jobd_step_events_total{state="completed"} 1.0' in body
    assert 'jobd_transitions_total{from="running",to="paused"} 1.0' in body
    for gauge in (
        "jobd_queue_depth 2.0",
        "jobd_jobs_pending 7.0",
        "jobd_jobs_running 1.0",
        "jobd_jobs_waiting_for_lock 2.0",
        "jobd_workers_busy 1.0",
        "jobd_queue_capacity 10.0",
    ):
        assert gauge in body
    source.broken = True
    assert b"jobd_transitions_total" in metrics.render()[0]  # a failing engine costs only gauges
    assert b"jobd_queue_depth" not in other.render()[0]


def test_metrics_counted_between_scrapes_add_up() -> None:
    """Counts and observations kept between scrapes (and flushed mid-way when thousands are
    waiting) all reach the exposition, once; a second scrape adds only what came since."""
    from jobd.core.events import JobEvent
    from jobd.service.metrics import Metrics

    metrics = Metrics(FakeQueue())
    runs = 5000  # more observations than are kept between flushes
    for job_id in range(runs):
        metrics.observe(JobEvent(job_id, "state", 1.0, S.QUEUED, S.RUNNING))
        metrics.observe(JobEvent(job_id, "state", 3.0, S.RUNNING, S.COMPLETED))
    body = metrics.render()[0].decode()
    assert f'jobd_transitions_total{{from="queued",to="running"}} {runs:.1f}' in body
    assert f'jobd_job_duration_seconds_count{{outcome="completed"}} {runs:.1f}' in body
    assert f'jobd_job_duration_seconds_sum{{outcome="completed"}} {2.0 * runs:.1f}' in body
    metrics.observe(JobEvent(runs, "state", 1.0, S.QUEUED, S.RUNNING))
    body = metrics.render()[0].decode()
    assert f'jobd_transitions_total{{from="queued",to="running"}} {runs + 1:.1f}' in body
    assert f'jobd_job_duration_seconds_count{{outcome="completed"}} {runs:.1f}' in body


async def test_end_event_streams_completes_open_streams(config: Config) -> None:
    async with api(config) as (_, client), open_stream(client.app) as stream:
        await stream.start()
        await stream.read_until(": connected\n\n")
        end_event_streams(client.app)
        await stream.read_to_end()  # without the client leaving
        async with open_stream(client.app) as late:  # and new ones end at once
            await late.start()
            await late.read_to_end()
