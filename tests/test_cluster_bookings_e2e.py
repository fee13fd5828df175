"""Two real daemons on one PostgreSQL racing to book the same resources (SPEC §10): many
concurrent requests to both nodes, capacity 1 and capacity 2; the database never holds
more overlapping reservations than capacity, and every refusal is a clean 409
``booking-conflict`` naming the resource (tests/cluster.py starts the nodes).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx

from tests.cluster import CLUSTER_WORKFLOWS, Cluster

RESOURCES = """
[resources.solo]
capacity = 1

[resources.duo]
capacity = 2
"""
#: A day far ahead: nothing booked becomes due while the test runs.
DAY = datetime(2099, 1, 1, tzinfo=UTC)
#: Reservations of one resource overlapping another's start beyond capacity (none, ever).
OVERLOADED = """
SELECT r.job_id FROM reservations r JOIN reservations o
    ON o.resource = r.resource AND o.span @> r.start
 WHERE r.resource = %s GROUP BY r.job_id, r.start HAVING count(*) > %s
"""


def _spans(seed: int, count: int) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    spans = []
    for _ in range(count):
        start = DAY + timedelta(minutes=rnd.randrange(0, 120))
        spans.append((start, start + timedelta(minutes=rnd.randrange(5, 40))))
    spans += [(DAY + timedelta(minutes=60), DAY + timedelta(minutes=70))] * 8  # all at once
    return [(s.isoformat(), e.isoformat()) for s, e in spans]


async def _race(
    cluster: Cluster, resource: str, spans: list[tuple[str, str]]
) -> list[httpx.Response]:
    clients = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(cluster.node(name).layout.socket)),
            base_url="http://jobd",
            timeout=120,
        )
        for name in ("a", "b")
    ]
    answers: list[httpx.Response] = []

    async def book(client: httpx.AsyncClient, start: str, end: str) -> None:
        body: dict[str, Any] = {
            "workflow": "demo",
            "params": {"who": "x"},
            "state": "tentative",
            "resources": [resource],
            "start_at": start,
            "end_at": end,
        }
        answers.append(await client.post("/v1/jobs", json=body))

    async with anyio.create_task_group() as tg:
        for i, (start, end) in enumerate(spans):
            tg.start_soon(book, clients[i % 2], start, end)
    for client in clients:
        await client.aclose()
    return answers


def test_two_nodes_racing_never_double_book_a_resource(cluster: Cluster) -> None:
    cluster.workflows = CLUSTER_WORKFLOWS + RESOURCES
    cluster.start("a", "b")
    for resource, capacity, seed in (("solo", 1, 1), ("duo", 2, 2)):
        spans = _spans(seed, 40)
        answers = anyio.run(_race, cluster, resource, spans)
        accepted = [r.json()["id"] for r in answers if r.status_code in (200, 201)]
        refused = [r for r in answers if r.status_code not in (200, 201)]
        assert len(accepted) + len(refused) == len(spans)
        assert accepted and refused
        for answer in refused:
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            assert error["code"] == "booking-conflict" and error["details"]["resource"] == resource
        assert cluster.sql(OVERLOADED, (resource, capacity)) == []
        rows = cluster.sql("SELECT job_id FROM reservations WHERE resource = %s", (resource,))
        assert sorted(r[0] for r in rows) == sorted(accepted)
