"""``/openapi.json`` documents the errors the routes really give, in jobd's error shape.

The real engine on a real SQLite file behind the app; every refusal below is provoked for
real and its status must be one the document lists for that route, with the ``Error``
schema. FastAPI's own ``422`` (which jobd never answers) must be gone.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobd.config import Config, ResourceConfig
from jobd.config.access import Access
from jobd.core.states import JobState
from jobd.service.api import create_app
from tests.enginekit import make_config, running_engine, step, wait_state, workflow

FAR, FAR_END = "2099-01-01T10:00:00Z", "2099-01-01T11:00:00Z"
TOKEN = "a-token-for-the-openapi-test"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    flows = [workflow("quick", step("nap", "sleep", params={"seconds": 0}))]
    return make_config(tmp_path, flows, resources={"enc-1": ResourceConfig("enc-1")})


@asynccontextmanager
async def client(config: Config, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running_engine(config) as engine:
        app = create_app(engine, version="9.9.9", started_at=time.time(), **kw)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobd") as http:
            http.engine = engine  # type: ignore[attr-defined]
            yield http


def documented(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    responses: dict[str, Any] = document["paths"][path][method.lower()]["responses"]
    return responses


async def test_no_422_and_every_error_in_the_one_shape(config: Config) -> None:
    async with client(config) as http:
        document = (await http.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["Error"]["properties"]["error"]["required"] == ["code", "message", "details"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, f"{method} {path}"
            assert "400" in responses, f"{method} {path}: an unknown query parameter is a 400"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
    assert "401" not in documented(document, "GET", "/v1/health")  # public
    operation = documented(document, "POST", "/v1/jobs/{job_id}/{operation}")
    assert {"200", "201", "204"} <= set(operation), "the job, resubmit's new job, delete"
    assert documented(document, "POST", "/v1/batch/jobs")["413"]["description"].startswith(
        "more than 10000 jobs"
    ), "a route's own description of a status is kept"


async def test_each_refusal_provoked_is_documented_for_its_route(config: Config) -> None:
    """(method, route template, request) → the status seen, which the document lists."""
    seen: list[tuple[str, str, int]] = []
    async with client(config) as http:
        document = (await http.get("/openapi.json")).json()

        async def call(method: str, template: str, url: str, **kw: Any) -> httpx.Response:
            answer = await http.request(method, url, **kw)
            assert answer.status_code >= 400 and set(answer.json()) == {"error"}, answer.text
            seen.append((method, template, answer.status_code))
            return answer

        booked = {"workflow": "quick", "resources": ["enc-1"], "start_at": FAR, "end_at": FAR_END}
        first = (await http.post("/v1/jobs", json=booked)).json()
        done = (await http.post("/v1/jobs", json={"workflow": "quick"})).json()
        await wait_state(http.engine, done["id"], JobState.COMPLETED)  # type: ignore[attr-defined]
        await call("POST", "/v1/jobs", "/v1/jobs", json={"workflow": "nope"})
        await call("POST", "/v1/jobs", "/v1/jobs", json=booked)  # double booking: 409
        await call("GET", "/v1/jobs", "/v1/jobs?stat=failed")
        await call("GET", "/v1/jobs/{job_id}", "/v1/jobs/999999")
        await call("GET", "/v1/jobs/{job_id}/log", "/v1/jobs/999999/log")
        await call("PATCH", "/v1/jobs/{job_id}", f"/v1/jobs/{first['id']}", json={"priority": "x"})
        await call("PATCH", "/v1/jobs/{job_id}", f"/v1/jobs/{done['id']}", json={"priority": 3})
        await call("DELETE", "/v1/jobs/{job_id}", "/v1/jobs/999999")
        await call("POST", "/v1/jobs/{job_id}/{operation}", f"/v1/jobs/{done['id']}/pause")
        await call("POST", "/v1/jobs/{job_id}/{operation}", f"/v1/jobs/{done['id']}/frobnicate")
        await call("POST", "/v1/batch/jobs", "/v1/batch/jobs", json={"jobs": [booked]})
        over = {"jobs": [{"workflow": "quick"}] * 10_001}
        await call("POST", "/v1/batch/jobs", "/v1/batch/jobs", json=over)
        await call("POST", "/v1/batch/{operation}", "/v1/batch/cancel", json={"ids": "x"})
        await call("POST", "/v1/schedules/{name}/{action}", "/v1/schedules/nope/run")
        await call("GET", "/v1/bookings", "/v1/bookings?from=yesterday")
        await call("GET", "/v1/queue", "/v1/queue?verbose=1")
    async with client(config, access=Access(viewers=[])) as http:
        await call("POST", "/v1/jobs", "/v1/jobs", json={"workflow": "quick"})  # 403
    async with client(config, token=TOKEN) as http:
        await call("GET", "/v1/jobs", "/v1/jobs")  # over TCP without the token: 401
    assert {status for *_, status in seen} >= {400, 401, 403, 404, 409, 413}
    for method, template, status in seen:
        assert str(status) in documented(document, method, template), (method, template, status)
