"""Bookings on a cluster: what the database's enforcement costs, and nodes racing.

Every node is a real engine on a store of its own (``[daemon] database``, nodes ``n0``,
``n1``, ...), all in this process, on one fresh PostgreSQL database per run (``--server``,
else ``$JOBD_TEST_PG_URL``, else the local server), dropped after. The jobs are tentative:
they book, and never run.

* **plain** / **booked**: N submissions (64 at a time, round-robin over the nodes), without
  resources, then each booking its own hour of one of 10 resources (no conflicts): the
  submissions/s of each, so the difference is the booking's cost (the index, the slot
  trigger and the exclusion constraint, the NOTIFY and the other nodes' reading it).
* **race**: N submissions for the SAME hour of one resource of capacity 2, all at once
  over the nodes: accepted must be 2 (never more, whichever node's index or the database
  refused the others); every other is a 409; reported with the wall time.

Prints one JSON line. Usage::

    python -m bench.pgbookings [--nodes 2] [--jobs 2000] [--race 200] [--server URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from bench.engine import PLUGINS
from bench.pg import fresh_database, server_url
from jobd.config import Config, DaemonConfig, Defaults, ResourceConfig, StepConfig, WorkflowConfig
from jobd.core.errors import BookingConflict
from jobd.core.models import JobSpec
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.store import JobFilter, open_store

#: A day far ahead: nothing booked becomes due while the bench runs.
T = 4_000_000_000.0
INFLIGHT = 64


def _config(state: Path, url: str, node: str) -> Config:
    flows = {"w": WorkflowConfig(name="w", steps=(StepConfig("p", "pause", {"seconds": 0}),))}
    resources = {f"r{i}": ResourceConfig(f"r{i}", capacity=1) for i in range(10)}
    resources["duo"] = ResourceConfig("duo", capacity=2)
    daemon = DaemonConfig(
        state_dir=state / node,
        plugin_dirs=(PLUGINS,),
        file_roots=(state,),
        database=url,
        node=node,
    )
    return Config(daemon=daemon, defaults=Defaults(retries=0), workflows=flows, resources=resources)


@asynccontextmanager
async def nodes(url: str, k: int) -> AsyncIterator[list[Engine]]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as tmp:
        state = Path(tmp)
        plugins = PluginHost([PLUGINS], builtin=False, entry_points=False)
        plugins.load()
        async with AsyncExitStack() as stack:
            # Stores first, so that they close after the engines have stopped (a store that
            # closes leaves the cluster: its engine, still running, would find itself fenced).
            stores = []
            for i in range(k):
                (state / f"n{i}").mkdir()
                stores.append(
                    await stack.enter_async_context(
                        open_store(state / f"n{i}" / "unused.db", database=url, node=f"n{i}")
                    )
                )
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            engines = []
            for i, store in enumerate(stores):
                engine = Engine(_config(state, url, f"n{i}"), store, plugins)
                await tg.start(engine.run)
                engines.append(engine)
            yield engines


async def _submit_all(engines: list[Engine], specs: list[JobSpec]) -> tuple[float, int, int]:
    """Submit ``specs`` (``INFLIGHT`` at a time, round-robin): wall s, accepted, refused."""
    accepted = refused = 0
    limit = anyio.Semaphore(INFLIGHT)

    async def one(i: int, spec: JobSpec) -> None:
        nonlocal accepted, refused
        async with limit:
            try:
                await engines[i % len(engines)].submit(spec)
                accepted += 1
            except BookingConflict:
                refused += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, spec in enumerate(specs):
            tg.start_soon(one, i, spec)
    return time.perf_counter() - t0, accepted, refused


def _spec(resource: str | None, start: float) -> JobSpec:
    resources = (resource,) if resource else ()
    return JobSpec(
        workflow="w",
        state=JobState.TENTATIVE,
        start_at=start,
        end_at=start + 3600,
        resources=resources,
    )


async def throughput(url: str, n: int, k: int, booked: bool) -> dict[str, Any]:
    async with nodes(url, k) as engines:
        specs = [_spec(f"r{i % 10}" if booked else None, T + (i // 10) * 3600) for i in range(n)]
        wall, accepted, refused = await _submit_all(engines, specs)
    assert accepted == n and refused == 0, (accepted, refused)
    return {"jobs": n, "nodes": k, "submits_per_s": round(n / wall)}


async def race(url: str, n: int, k: int) -> dict[str, Any]:
    async with nodes(url, k) as engines:
        wall, accepted, refused = await _submit_all(engines, [_spec("duo", T)] * n)
        in_db = len(await engines[0].store.match_ids(JobFilter(resource="duo"), n))
    assert accepted == 2 == in_db, (accepted, in_db)
    return {
        "submits": n,
        "nodes": k,
        "accepted": accepted,
        "refused": refused,
        "wall_s": round(wall, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--race", type=int, default=200)
    p.add_argument("--server", help="a postgresql:// URL of a role that may create databases")
    args = p.parse_args()
    server = server_url(args.server)
    out: dict[str, Any] = {"bench": "pgbookings"}
    for name, booked in (("plain", False), ("booked", True)):
        with fresh_database(server, "jobd_bench_bookings") as url:
            out[name] = anyio.run(throughput, url, args.jobs, args.nodes, booked)
    with fresh_database(server, "jobd_bench_bookings") as url:
        out["race"] = anyio.run(race, url, args.race, args.nodes)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
