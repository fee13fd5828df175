"""jobd.service.authz: every route declares its role once; the app refuses one that does not.

Real engine, real app (in-process transport: no socket peer, so the caller is
admin only while no role lists are set). The real-user proof is in
tests/test_roles_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobd.config import Config
from jobd.config.access import Access, Role
from jobd.engine import Engine
from jobd.service.api import create_app
from jobd.service.authz import check_routes, route_roles
from tests.enginekit import make_config, running_engine, step, workflow

ROOT = Path(__file__).parent.parent

#: The contract of SPEC §11, route by route (the routes this app has today).
EXPECTED = {
    "GET /v1/health": None,
    "GET /openapi.json": Role.VIEWER,
    "GET /v1/jobs": Role.VIEWER,
    "GET /v1/jobs/{job_id}": Role.VIEWER,
    "GET /v1/jobs/{job_id}/log": Role.VIEWER,
    "GET /v1/queue": Role.VIEWER,
    "GET /v1/locks": Role.VIEWER,
    "GET /v1/resources": Role.VIEWER,
    "GET /v1/bookings": Role.VIEWER,
    "GET /v1/schedules": Role.VIEWER,
    "GET /v1/plugins": Role.VIEWER,
    "GET /v1/nodes": Role.VIEWER,
    "GET /v1/events": Role.VIEWER,
    "GET /metrics": Role.VIEWER,
    "POST /v1/jobs": Role.OPERATOR,
    "PATCH /v1/jobs/{job_id}": Role.OPERATOR,
    "POST /v1/jobs/{job_id}/{operation}": Role.OPERATOR,  # delete: admin, inside
    "DELETE /v1/jobs/{job_id}": Role.ADMIN,
    "POST /v1/reload": Role.ADMIN,
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, [workflow("quick", step("nap", "sleep", params={"seconds": 0}))])


@asynccontextmanager
async def app_on(config: Config, **kw: Any) -> AsyncIterator[tuple[Engine, FastAPI]]:
    async with running_engine(config) as engine:
        yield engine, create_app(engine, version="1", started_at=time.time(), **kw)


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://jobd")


async def test_every_route_declares_the_role_of_spec_11(config: Config) -> None:
    async with app_on(config) as (_, app):
        table = route_roles(app)
    for route, role in EXPECTED.items():
        assert table.get(route, "undeclared") == role, route
    # A route another change adds must pick its role; it shows up here to be checked.
    extra = {route: role for route, role in table.items() if route not in EXPECTED}
    assert all(role is not None for role in extra.values()), extra


async def test_an_app_with_an_undeclared_route_is_refused(config: Config) -> None:
    async with app_on(config) as (_, app):

        @app.get("/v1/oops")
        async def oops() -> dict[str, str]:
            return {}

        with pytest.raises(RuntimeError, match="GET /v1/oops"):
            check_routes(app)


async def test_an_undeclared_route_added_later_is_for_admins_only(config: Config) -> None:
    async with app_on(config, access=Access(viewers=[])) as (_, app):

        @app.get("/v1/oops")
        async def oops() -> dict[str, str]:
            return {}

        async with client(app) as http:
            answer = await http.get("/v1/oops")
    assert answer.status_code == 403
    assert answer.json()["error"]["details"]["needed"] == "admin"


async def test_beyond_its_role_is_403_forbidden_naming_the_role(config: Config) -> None:
    async with app_on(config, access=Access(viewers=[])) as (_, app), client(app) as http:
        answer = await http.post("/v1/jobs", json={"workflow": "quick"})
        health = (await http.get("/v1/health")).json()
        schema = await http.get("/openapi.json")
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "forbidden"
    assert error["message"].startswith("POST /v1/jobs needs the operator role")
    assert error["details"]["needed"] == "operator" and error["details"]["role"] is None
    assert health["caller"]["role"] is None
    assert schema.status_code == 403


async def test_refused_before_the_body_is_validated(config: Config) -> None:
    """A caller who may not submit learns that, not what is wrong with the body."""
    async with app_on(config, access=Access(viewers=[])) as (_, app), client(app) as http:
        answer = await http.post("/v1/jobs", json={"workflow": "quick", "priorty": 1})
    assert answer.status_code == 403


async def test_without_lists_the_local_caller_is_admin(config: Config) -> None:
    async with app_on(config) as (_, app), client(app) as http:
        health = (await http.get("/v1/health")).json()
        submitted = await http.post(
            "/v1/jobs", json={"workflow": "quick"}, headers={"x-jobd-client": "cli"}
        )
    assert health["caller"] == {
        "name": None,
        "via": "local",
        "uid": None,
        "client": "api",
        "actor": "api",
        "role": "admin",
    }
    assert submitted.status_code == 201
    assert submitted.json()["history"][0]["actor"] == "cli"


def test_the_docs_name_every_role() -> None:
    api_doc = (ROOT / "docs" / "api.md").read_text()
    for word in ("viewer", "operator", "admin", "`forbidden`", "X-Jobd-Client", "cli:alice"):
        assert word in api_doc, word
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "SO_PEERCRED" in operations and "operators" in operations
