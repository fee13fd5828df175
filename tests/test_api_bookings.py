"""``GET /v1/bookings``: the resource filter and the compact columns form the timeline asks
for (docs/api.md), against the real engine and store, compared with the items form."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobd.config import Config, PoolConfig, ResourceConfig
from jobd.service.api import create_app
from tests.enginekit import make_config, running_engine, step, workflow

DAY = "2099-01-01T"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    names = ("enc-1", "enc-2", "studio")
    return make_config(
        tmp_path,
        [workflow("quick", step("nap", "sleep", params={"seconds": 0}))],
        resources={n: ResourceConfig(n) for n in names},
        pools={"encoders": PoolConfig("encoders", ("enc-1", "enc-2"))},
    )


@asynccontextmanager
async def client_of(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with running_engine(config) as engine:
        app = create_app(engine, version="9.9.9", started_at=time.time())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobd") as client:
            yield client


async def book(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"workflow": "quick", "state": "tentative", "name": name, **fields}
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def as_items(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The columns form read back into items, times as Unix ms (what the page does)."""
    jobs, cols = columns["jobs"], columns["bookings"]
    out = []
    for i, j in enumerate(cols["job"]):
        pool = cols["pool"][i]
        out.append(
            {
                "job_id": jobs["id"][j],
                "job_name": jobs["name"][j],
                "state": jobs["state"][j],
                "resource": columns["resources"][cols["resource"][i]],
                "pool": None if pool is None else columns["pools"][pool],
                "start": cols["start"][i],
                "end": cols["end"][i],
                "start_at": jobs["start_at"][j],
                "end_at": jobs["end_at"][j],
            }
        )
    return out


def items_in_ms(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("start", "end", "start_at", "end_at")
    return [{k: ms(v) if k in keys and v else v for k, v in item.items()} for item in items]


async def test_the_columns_form_holds_what_the_items_hold_each_job_once(config: Config) -> None:
    async with client_of(config) as client:
        both = await book(
            client,
            "two-resources",
            resources=["enc-1", "studio"],
            start_at=f"{DAY}10:00:00Z",
            end_at=f"{DAY}11:00:00Z",
            preroll=600,
            postroll=300,
        )
        pooled = await book(
            client, "by-pool", pools=["encoders"], start_at=f"{DAY}12:00:00Z", end_at=f"{DAY}13:00Z"
        )
        window = {"from": f"{DAY}00:00:00Z", "to": f"{DAY}23:59:59Z"}
        items = (await client.get("/v1/bookings", params=window)).json()["items"]
        columns = (await client.get("/v1/bookings", params={**window, "form": "columns"})).json()
    assert columns["form"] == "columns" and columns["count"] == 3
    assert columns["jobs"]["id"] == [both["id"], pooled["id"]]  # each job once
    assert as_items(columns) == items_in_ms(items)
    first = as_items(columns)[0]
    assert first["start_at"] - first["start"] == 600_000  # preroll, in ms
    assert first["end"] - first["end_at"] == 300_000  # postroll
    assert "encoders" in columns["pools"]


async def test_the_resource_filter_and_its_errors(config: Config) -> None:
    async with client_of(config) as client:
        on_studio = await book(
            client,
            "studio-job",
            resources=["studio"],
            start_at=f"{DAY}10:00Z",
            end_at=f"{DAY}11:00Z",
        )
        await book(
            client, "enc-job", resources=["enc-2"], start_at=f"{DAY}10:00Z", end_at=f"{DAY}11:00Z"
        )

        async def get(**params: Any) -> httpx.Response:
            return await client.get("/v1/bookings", params=params)

        only = (await get(resource="studio")).json()["items"]
        both = (await get(resource=["studio", "enc-2"], form="columns")).json()
        comma = (await get(resource="enc-2,studio", form="columns")).json()
        unknown = (await get(resource="no-such-resource")).json()["items"]
        bad_form = await get(form="rows")
        spec = (await client.get("/openapi.json")).json()
    params = {p["name"] for p in spec["paths"]["/v1/bookings"]["get"]["parameters"]}
    assert {"from", "to", "resource", "form"} <= params
    assert [b["job_id"] for b in only] == [on_studio["id"]]
    assert both["count"] == 2 and sorted(both["resources"]) == ["enc-2", "studio"]
    assert comma["count"] == 2
    assert unknown == []  # not an error: the page asks for the rows it shows
    assert bad_form.status_code == 400, bad_form.text
