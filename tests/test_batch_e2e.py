"""Batch routes, list filters and schedule control, against the real daemon over its socket.

One daemon serves the module (start-up costs about a second); each test makes jobs of its
own and tells them apart by name or workflow, so the order of the tests does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import e2e

WORKFLOWS = (
    e2e.DEMO_WORKFLOWS
    + """
[workflows.booked]
steps = [{ name = "hold", action = "sleep", params = { seconds = 0 } }]

[resources.enc-1]
capacity = 1

[resources.enc-2]
capacity = 1

[pools.encoders]
members = ["enc-1", "enc-2"]
"""
)
FAR = "2099-01-01T10:00:00Z"
FAR_END = "2099-01-01T11:00:00Z"


@pytest.fixture(scope="module")
def daemon() -> Iterator[e2e.Daemon]:
    with e2e.running_daemon(workflows=WORKFLOWS) as d:
        yield d


@pytest.fixture
def client(daemon: e2e.Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(daemon.layout.socket)),
        base_url="http://jobd",
        timeout=60,
    ) as c:
        yield c


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


def newest_id(client: httpx.Client) -> int:
    """The id of the newest job (0 if none): what the next accepted job's id follows."""
    items = client.get("/v1/jobs", params={"limit": 1}).json()["items"]
    return int(items[0]["id"]) if items else 0


def draft(name: str, **extra: Any) -> dict[str, Any]:
    return {"workflow": "demo", "state": "draft", "name": name, "params": {"who": "x"}, **extra}


# ------------------------------------------------------------------------ batch submission


def test_a_batch_is_stored_in_order_and_runs(daemon: e2e.Daemon, client: httpx.Client) -> None:
    jobs = [{"workflow": "demo", "params": {"who": f"w{i}"}, "name": f"run-{i}"} for i in range(50)]
    response = client.post("/v1/batch/jobs", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [job["name"] for job in items] == [f"run-{i}" for i in range(50)]
    ids = [job["id"] for job in items]
    assert ids == list(range(ids[0], ids[0] + 50))  # dense, in order
    assert all(job["history"][0]["cause"] == "submitted" for job in items)

    def all_completed() -> bool:
        states = {client.get(f"/v1/jobs/{i}").json()["state"] for i in (ids[0], ids[-1])}
        return states == {"completed"}

    e2e.wait_until(all_completed, what="the batch's first and last job completed")
    steps = client.get(f"/v1/jobs/{ids[7]}").json()["steps"]
    assert steps[0]["outputs"] == {"echo": {"greeting": "hello w7"}}


def test_an_invalid_job_stores_nothing_and_uses_no_id(client: httpx.Client) -> None:
    before = newest_id(client)
    jobs = [draft("ok-1"), draft("ok-2"), {"workflow": "demo", "priority": 5000}, draft("ok-3")]
    error = error_of(client.post("/v1/batch/jobs", json={"jobs": jobs}), 400, "invalid")
    assert "body.jobs.2.priority" in error["message"], error
    # Refused by the engine (after the body's validation): the index is named too.
    jobs[2] = {"workflow": "no-such-flow"}
    error = error_of(client.post("/v1/batch/jobs", json={"jobs": jobs}), 400, "invalid")
    assert error["message"].startswith("jobs[2]: unknown workflow 'no-such-flow'"), error
    assert error["details"]["index"] == 2 and error["details"]["field"] == "jobs.2.workflow"
    jobs[2] = draft("no-zone", start_at="2099-01-01T10:00")  # no zone
    error = error_of(client.post("/v1/batch/jobs", json={"jobs": jobs}), 400, "invalid")
    assert error["message"].startswith("jobs[2]: start_at:"), error
    assert newest_id(client) == before  # nothing stored
    accepted = client.post("/v1/jobs", json=draft("after-refusals")).json()
    assert accepted["id"] == before + 1  # and no id used up


def test_a_booking_conflict_inside_the_batch_is_409_naming_the_index(
    client: httpx.Client,
) -> None:
    before = newest_id(client)
    slot = {"start_at": "2098-03-01T10:00:00Z", "end_at": "2098-03-01T11:00:00Z"}
    jobs = [
        {"workflow": "booked", "resources": ["enc-1"], **slot},
        {"workflow": "booked", "pools": ["encoders"], **slot},  # takes enc-2
        {"workflow": "booked", "pools": ["encoders"], **slot},  # nothing left
    ]
    error = error_of(client.post("/v1/batch/jobs", json={"jobs": jobs}), 409, "booking-conflict")
    assert error["message"].startswith("jobs[2]: "), error
    assert error["details"]["index"] == 2
    assert newest_id(client) == before
    # Nothing of the refused batch stayed booked: the same slot is free for all of it but one.
    response = client.post("/v1/batch/jobs", json={"jobs": jobs[:2]})
    assert response.status_code == 201, response.text
    booked = sorted(r["resource"] for job in response.json()["items"] for r in job["reservations"])
    assert booked == ["enc-1", "enc-2"]


def test_batches_over_the_limits_are_413_naming_the_limit(client: httpx.Client) -> None:
    before = newest_id(client)
    too_many = {"jobs": [draft("many")] * 10_001}
    error = error_of(client.post("/v1/batch/jobs", json=too_many), 413, "too-large")
    assert "10000" in error["message"] and error["details"]["limit"] == 10_000
    huge = {"jobs": [{"workflow": "demo", "params": {"x": "a" * 1_000_000}}] * 17}
    error = error_of(client.post("/v1/batch/jobs", json=huge), 413, "too-large")
    assert str(16 * 1024 * 1024) in error["message"]
    assert newest_id(client) == before


def test_a_batch_body_of_the_wrong_shape_is_400(client: httpx.Client) -> None:
    for body, text in (
        ({}, "body.jobs: Field required"),
        ({"jobs": {"workflow": "demo"}}, "body.jobs: Input should be a valid list"),
        ({"jobs": [], "extra": 1}, "body.extra: unknown field"),
        ([1, 2], "body: Input should be a valid dictionary"),
    ):
        error = error_of(client.post("/v1/batch/jobs", json=body), 400, "invalid")
        assert text in error["message"], (body, error)
    response = client.post(
        "/v1/batch/jobs", content=b'{"jobs": [', headers={"content-type": "application/json"}
    )
    error_of(response, 400, "invalid-json")
    assert client.post("/v1/batch/jobs", json={"jobs": []}).json() == {"items": []}


# ------------------------------------------------------------------------ list filters


def listed(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/v1/jobs", params=params)
    assert response.status_code == 200, response.text
    return [job["name"] for job in response.json()["items"]]


def test_each_list_filter_through_the_daemon(client: httpx.Client) -> None:
    jobs = [
        draft("flt-a", assets=["flt-tape"], start_at="2097-05-01T10:00:00Z"),
        draft(
            "flt-b",
            shared_assets=["flt-tape"],
            resources=["enc-1"],
            start_at="2096-05-01T10:00:00Z",
            end_at="2096-05-01T11:00:00Z",
        ),
        {
            "workflow": "booked",
            "name": "flt-c",
            "pools": ["encoders"],
            "state": "tentative",
            "start_at": "2097-05-02T10:00:00Z",
            "end_at": "2097-05-02T11:00:00Z",
        },
        {"workflow": "booked", "name": "flt-D-promo", "state": "draft"},
    ]
    items = client.post("/v1/batch/jobs", json={"jobs": jobs}).json()["items"]
    booked_on = items[2]["reservations"][0]["resource"]
    assert listed(client, search="flt-") == ["flt-D-promo", "flt-c", "flt-b", "flt-a"]
    assert listed(client, search="FLT-d") == ["flt-D-promo"]  # case does not matter
    assert listed(client, search="flt-", workflow="booked") == ["flt-D-promo", "flt-c"]
    assert listed(client, asset="flt-tape") == ["flt-b", "flt-a"]
    on_enc_1 = ["flt-c", "flt-b"] if booked_on == "enc-1" else ["flt-b"]
    assert listed(client, resource="enc-1", search="flt-") == on_enc_1
    assert listed(client, resource="encoders", search="flt-") == ["flt-c"]
    assert listed(client, resource=booked_on, search="flt-c") == ["flt-c"]
    assert listed(client, state="tentative", search="flt-") == ["flt-c"]
    assert listed(client, state=["tentative", "draft"], search="flt-") == [
        "flt-D-promo",
        "flt-c",
        "flt-b",
        "flt-a",
    ]
    may = {"since": "2097-05-01T00:00:00Z", "until": "2097-05-02T00:00:00Z"}
    assert listed(client, **may, search="flt-") == ["flt-a"]
    assert listed(client, since="2097-05-01T00:00:00+02:00", search="flt-") == ["flt-c", "flt-a"]
    assert listed(client, search="flt-", until="2097-01-01T00:00:00Z") == ["flt-D-promo", "flt-b"]
    assert listed(client, search="no-such-name-anywhere") == []


def test_bad_filter_values_are_400_naming_the_parameter(client: httpx.Client) -> None:
    for params, text in (
        ({"since": "2097-05-01T10:00"}, "since: time"),
        ({"until": "yesterday-ish"}, "until:"),
        ({"since": "2097-05-02T00:00:00Z", "until": "2097-05-01T00:00:00Z"}, "until: must not"),
        ({"state": "runing"}, "state: unknown state 'runing'"),
        ({"workflow": ""}, "query.workflow"),
        ({"search": "x" * 201}, "query.search"),
        ({"assets": "a"}, "query.assets: unknown parameter"),
    ):
        error = error_of(client.get("/v1/jobs", params=params), 400, "invalid")
        assert text in error["message"], (params, error)


# ------------------------------------------------------------------------ batch operations


def test_a_batch_operation_by_ids_does_what_it_may_and_refuses_the_rest(
    client: httpx.Client,
) -> None:
    items = client.post(
        "/v1/batch/jobs", json={"jobs": [draft("ops-1"), draft("ops-2"), draft("ops-3")]}
    ).json()["items"]
    ids = [job["id"] for job in items]
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    missing = 10**9
    response = client.post("/v1/batch/cancel", json={"ids": [ids[0], ids[1], missing, ids[2]]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["done"] == [ids[0], ids[2]] and answer["matched"] == 4
    refused = {r["id"]: r["error"] for r in answer["refused"]}
    assert refused[ids[1]]["code"] == "invalid-transition"
    assert refused[ids[1]]["message"] == (
        f"job {ids[1]}: cannot cancel a job in state canceled "
        "(allowed in canceled: resubmit, invoice-ready, delete)"
    )
    assert refused[ids[1]]["details"]["allowed"] == ["resubmit", "invoice-ready", "delete"]
    assert refused[missing]["code"] == "not-found"
    states = [client.get(f"/v1/jobs/{i}").json()["state"] for i in ids]
    assert states == ["canceled"] * 3
    resubmitted = client.post("/v1/batch/resubmit", json={"ids": ids[:2]}).json()
    assert resubmitted["done"] == ids[:2] and len(resubmitted["created"]) == 2


def test_a_batch_operation_by_filter(client: httpx.Client) -> None:
    jobs = [draft(f"byf-{i}") for i in range(30)] + [draft("byf-keep", priority=1)]
    ids = [job["id"] for job in client.post("/v1/batch/jobs", json={"jobs": jobs}).json()["items"]]
    body = {"filter": {"search": "byf-", "state": ["draft"], "until": "2090-01-01T00:00:00Z"}}
    nothing = client.post("/v1/batch/confirm", json={"filter": {"search": "byf-nomatch"}})
    assert nothing.status_code == 200
    assert nothing.json() == {"operation": "confirm", "matched": 0, "done": [], "refused": []}
    answer = client.post("/v1/batch/tentative", json=body).json()
    assert answer["matched"] == 31 and answer["done"] == ids and answer["refused"] == []
    assert set(listed(client, search="byf-", state="tentative")) == {j["name"] for j in jobs}
    # Again: now none is a draft, so nothing matches and nothing changes.
    again = client.post("/v1/batch/tentative", json=body).json()
    assert again["matched"] == 0 and again["done"] == []


def test_batch_operation_refusals(client: httpx.Client) -> None:
    for body, status, code, text in (
        ({"filter": {}}, 400, "invalid", "at least one filter"),
        ({}, 400, "invalid", "either ids or filter"),
        ({"ids": [1], "filter": {"workflow": "demo"}}, 400, "invalid", "either ids or filter"),
        ({"ids": ["1"]}, 400, "invalid", "body.ids.0"),
        ({"filter": {"since": "2090-01-01"}}, 400, "invalid", "filter.since"),
        ({"filter": {"state": ["nope"]}}, 400, "invalid", "filter.state: unknown state"),
        ({"filter": {"colour": "red"}}, 400, "invalid", "body.filter.colour: unknown field"),
        ({"ids": list(range(1, 10_002))}, 413, "too-large", "at most 10000"),
    ):
        error = error_of(client.post("/v1/batch/cancel", json=body), status, code)
        assert text in error["message"], (body, error)
    error = error_of(
        client.post("/v1/batch/frobnicate", json={"ids": [1]}), 404, "unknown-operation"
    )
    assert "cancel" in error["details"]["operations"]


def test_queued_and_pending_jobs_canceled_by_filter_through_the_daemon() -> None:
    # One worker held by a job that waits for a file: everything after it queues or pends.
    extra = "run_queue_size = 20"
    with e2e.running_daemon(workflows=WORKFLOWS, workers=1, daemon_extra=extra) as d:
        transport = httpx.HTTPTransport(uds=str(d.layout.socket))
        with httpx.Client(transport=transport, base_url="http://jobd", timeout=60) as client:
            gate = d.layout.base / "gate"
            hold = client.post("/v1/jobs", json={"workflow": "hold", "params": {"path": str(gate)}})
            hold_id = hold.json()["id"]

            def hold_running() -> bool:
                return bool(client.get(f"/v1/jobs/{hold_id}").json()["state"] == "running")

            e2e.wait_until(hold_running, what="the holding job running")
            jobs = [
                {"workflow": "demo", "params": {"who": "x"}, "name": f"line-{i}"} for i in range(50)
            ]
            ids = [
                j["id"] for j in client.post("/v1/batch/jobs", json={"jobs": jobs}).json()["items"]
            ]
            queue = client.get("/v1/queue").json()
            assert (len(queue["queued"]), queue["pending"]) == (20, 30)
            body = {"filter": {"state": ["queued", "pending"], "workflow": "demo"}}
            answer = client.post("/v1/batch/cancel", json=body).json()
            assert (answer["matched"], answer["done"], answer["refused"]) == (50, ids, [])
            queue = client.get("/v1/queue").json()
            assert (queue["queued"], queue["pending"], queue["running"]) == ([], 0, [hold_id])
            # Each job told as if canceled alone: its history row, its event (the metrics).
            history = client.get(f"/v1/jobs/{ids[0]}").json()["history"][-1]
            assert (history["from"], history["to"], history["cause"]) == (
                "queued",
                "canceled",
                "canceled",
            )
            assert history["actor"].startswith("api:")
            metrics = client.get("/metrics").text
            assert 'jobd_transitions_total{from="queued",to="canceled"} 20.0' in metrics
            assert 'jobd_transitions_total{from="pending",to="canceled"} 30.0' in metrics
            again = client.post("/v1/batch/cancel", json=body).json()
            assert (again["matched"], again["done"]) == (0, [])
            gate.touch()
            after = client.post("/v1/jobs", json={"workflow": "demo", "params": {"who": "y"}})

            def all_done() -> bool:
                return {
                    client.get(f"/v1/jobs/{i}").json()["state"]
                    for i in (hold_id, after.json()["id"])
                } == {"completed"}

            e2e.wait_until(all_done, what="the holding job and a new one completed")
