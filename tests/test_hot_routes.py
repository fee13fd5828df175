"""The submissions' hot path (:class:`jobd.service.api.HotRoutes`) answers exactly as their FastAPI
routes do: the same statuses, headers and error bodies, for good and bad input alike."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobd.config.access import Access, Role
from jobd.core.models import ErrorOverlay, HistoryEntry, Job, JobSpec, Reservation, Step
from jobd.core.states import JobState
from jobd.service.api import HotRoutes, create_app, iso_times, job_json
from jobd.service.authz import AccessMiddleware
from tests.enginekit import make_config, running_engine, step, workflow

JSON = {"content-type": "application/json"}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("ok", "/v1/jobs", {"json": {"workflow": "quick", "state": "draft", "name": "a"}}),
    ("ok actor", "/v1/jobs", {"json": {"workflow": "quick"}, "headers": {"x-jobd-actor": "cli"}}),
    ("no body", "/v1/jobs", {}),
    (
        "not json",
        "/v1/jobs",
        {"content": b"workflow=quick", "headers": {"content-type": "text/plain"}},
    ),
    ("no type", "/v1/jobs", {"content": b'{"workflow": "quick"}'}),
    (
        "+json type",
        "/v1/jobs",
        {
            "content": b'{"workflow": "quick", "state": "draft"}',
            "headers": {"content-type": "application/vnd.x+json"},
        },
    ),
    ("broken", "/v1/jobs", {"content": b'{"workflow": ', "headers": JSON}),
    (
        "deep",
        "/v1/jobs",
        {"content": b'{"workflow": "quick", "params": {"x": ' + b"[" * 100_000, "headers": JSON},
    ),
    (
        "huge int",
        "/v1/jobs",
        {
            "content": b'{"workflow": "quick", "params": {"x": 1' + b"0" * 5000 + b"}}",
            "headers": JSON,
        },
    ),
    ("a list", "/v1/jobs", {"json": [1]}),
    ("typo", "/v1/jobs", {"json": {"workflow": "quick", "priorty": 1}}),
    ("strict", "/v1/jobs", {"json": {"workflow": "quick", "priority": "5"}}),
    (
        "NaN",
        "/v1/jobs",
        {"content": b'{"workflow": "quick", "params": {"x": NaN}}', "headers": JSON},
    ),
    (
        "surrogate",
        "/v1/jobs",
        {"content": b'{"workflow": "quick", "name": "\\ud800"}', "headers": JSON},
    ),
    ("no zone", "/v1/jobs", {"json": {"workflow": "quick", "start_at": "2099-01-01T10:00"}}),
    ("unknown flow", "/v1/jobs", {"json": {"workflow": "nope"}}),
    ("query", "/v1/jobs?x=1", {"json": {"workflow": "quick"}}),
    ("batch ok", "/v1/batch/jobs", {"json": {"jobs": [{"workflow": "quick", "state": "draft"}]}}),
    ("batch bad", "/v1/batch/jobs", {"json": {"jobs": [{"workflow": "quick"}, {"workflow": 1}]}}),
    (
        "batch refused",
        "/v1/batch/jobs",
        {"json": {"jobs": [{"workflow": "quick"}, {"workflow": "x"}]}},
    ),
    ("batch no body", "/v1/batch/jobs", {}),
    ("batch too many", "/v1/batch/jobs", {"json": {"jobs": [{"workflow": "quick"}] * 10_001}}),
]


def comparable(response: httpx.Response) -> tuple[int, str | None, Any]:
    body = response.json()
    if response.status_code < 300:  # ids and times differ between the two apps' jobs
        items = body.get("items", [body])
        body = [
            {
                k: v
                for k, v in job.items()
                if not k.endswith("_at") and k not in {"id", "name", "history"}
            }
            for job in items
        ]
    location = response.headers.get("location")
    return response.status_code, location and location.rsplit("/", 1)[0], body


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_the_hot_path_answers_as_the_framework_does(
    tmp_path: Path, case: tuple[str, str, dict[str, Any]]
) -> None:
    _, url, kwargs = case
    config = make_config(tmp_path, [workflow("quick", step("nap", "sleep", params={"seconds": 0}))])
    async with running_engine(config) as engine:
        answers = []
        for hot in (True, False):
            app = create_app(engine, version="1", started_at=time.time(), hot_routes=hot)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://jobd") as client:
                answers.append(comparable(await client.post(url, **kwargs)))
    assert answers[0] == answers[1]


def test_job_json_is_iso_times_of_the_job() -> None:
    job = Job(
        7,
        JobSpec("w", params={"start_at": 5, "at": 1.5}, start_at=100.0, end_at=200.5),
        JobState.FAILED,
        created_at=1.25,
        updated_at=2.0,
        error=ErrorOverlay("step-failed", "boom", 3.0),
        steps=[
            Step(
                7, 0, "s", "a", {"end": 1}, started_at=4.0, ended_at=5.0, outputs={"started_at": 9}
            )
        ],
        reservations=[Reservation(7, "r", 90.0, 210.0)],
        history=[HistoryEntry(1.25, None, JobState.CONFIRMED, "submitted", "api")],
    )
    assert job_json(job) == iso_times(job.to_dict())
    assert job_json(job)["params"] == {"start_at": 5, "at": 1.5}  # user data untouched


async def test_the_hot_path_serves_submissions_without_the_framework(tmp_path: Path) -> None:
    """Behind HotRoutes sits an app that fails: the submissions never reach it."""

    async def not_here(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"{scope['path']} reached the framework")

    config = make_config(tmp_path, [workflow("quick", step("nap", "sleep", params={"seconds": 0}))])
    async with running_engine(config) as engine:
        roles = {"POST /v1/jobs": Role.OPERATOR, "POST /v1/batch/jobs": Role.OPERATOR}
        hot = AccessMiddleware(HotRoutes(not_here, engine, roles), access=Access(), tcp=False)
        transport = httpx.ASGITransport(app=hot)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobd") as client:
            one = await client.post("/v1/jobs", json={"workflow": "quick"})
            many = await client.post("/v1/batch/jobs", json={"jobs": [{"workflow": "quick"}] * 3})
            bad = await client.post("/v1/jobs", json={"workflow": "quick", "priority": 5000})
    assert one.status_code == 201 and one.json()["workflow"] == "quick"
    assert [job["id"] for job in many.json()["items"]] == [2, 3, 4]
    assert bad.status_code == 400 and "body.priority" in bad.json()["error"]["message"]


async def test_the_apps_submissions_pass_the_guards_but_not_the_framework(tmp_path: Path) -> None:
    """Through ``create_app``: a submission is answered in front of the framework's stack
    (Starlette builds it on the first request it serves: none yet), still inside the same
    access and body-limit guards (a TCP caller without a token: 401; too big: 413)."""
    config = make_config(tmp_path, [workflow("quick", step("nap", "sleep", params={"seconds": 0}))])
    async with running_engine(config) as engine:
        app = create_app(engine, version="1", started_at=time.time(), token="s3cret")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobd") as client:
            anonymous = await client.post("/v1/jobs", json={"workflow": "quick"})
            auth = {"authorization": "Bearer s3cret"}
            one = await client.post("/v1/jobs", json={"workflow": "quick"}, headers=auth)
            big = {"workflow": "quick", "params": {"x": "y" * 2_000_000}}
            too_big = await client.post("/v1/jobs", json=big, headers=auth)
            assert app.middleware_stack is None
            listed = await client.get("/v1/jobs", headers=auth)
            assert app.middleware_stack is not None
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert one.status_code == 201 and one.headers["location"] == f"/v1/jobs/{one.json()['id']}"
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too-large"
    assert [job["id"] for job in listed.json()["items"]] == [one.json()["id"]]
