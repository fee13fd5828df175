"""Asset locks across the nodes of a cluster: hand-off latency and the 50 ms locked workload.

Every node is a real engine on a store of its own (``[daemon] database``, node ``n0``,
``n1``, ...), all in this process, on one fresh PostgreSQL database (``--server``, else
``$JOBD_TEST_PG_URL``, else the local server); the database is dropped after.

**Hand-off across nodes.** N jobs lock asset ``A``, submitted to the nodes in turn (job i
on node i mod k). The first holds ``A`` until the other N-1 are ``waiting-for-lock``; from
then on each finishing job hands ``A`` to the next, which waits on the *other* node: the
release's transaction grants it and NOTIFYs that node, whose ``running`` (durable) starts
its step. Reported: the holder's action return → the next job's ``running`` event, p50/p99.

**50 ms locked workload.** N jobs round-robin over the nodes, each locking 1 of 10 assets
(exclusive), each a 50 ms step: jobs/s from the first submission to the last completion,
against the ideal of 10 assets busy all the time (10 / 0.05 s = 200 jobs/s). procrastinate
polls for a released lock (its worker is not woken): this is where a hand-off by NOTIFY
shows.

Prints one JSON line. Usage::

    python -m bench.cluster_locks [--nodes 2] [--handoffs 200] [--jobs 400] [--server URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio

from bench.engine import PLUGINS, Counter
from bench.handoff import MARK_PLUGIN, pcts
from bench.pg import fresh_database, server_url
from jobd.config import Config, DaemonConfig, Defaults, StepConfig, WorkflowConfig
from jobd.core.events import JobEvent
from jobd.core.models import JobSpec
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost, dropin_module_name
from jobd.store import open_store

TIMEOUT = float(os.environ.get("JOBD_BENCH_TIMEOUT", "600"))


def _config(state: Path, plugin_dir: Path, url: str, node: str, workers: int) -> Config:
    flows = {
        "mark": WorkflowConfig(name="mark", steps=(StepConfig(name="m", action="bench_mark"),)),
        "pause": WorkflowConfig(name="pause", steps=(StepConfig("p", "pause", {"seconds": 0.05}),)),
    }
    daemon = DaemonConfig(
        state_dir=state / node,
        workers=workers,
        run_queue_size=10000,
        plugin_dirs=(plugin_dir, PLUGINS),
        file_roots=(state,),
        database=url,
        node=node,
    )
    return Config(daemon=daemon, defaults=Defaults(retries=0), workflows=flows)


@asynccontextmanager
async def _node(
    state: Path, plugin_dir: Path, plugins: PluginHost, url: str, node: str, workers: int
) -> AsyncIterator[Engine]:
    """One node, running; stopped before its store closes (its outcome writes land)."""
    (state / node).mkdir()
    async with open_store(state / node / "unused.db", database=url, node=node) as store:
        engine = Engine(_config(state, plugin_dir, url, node, workers), store, plugins)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()


@asynccontextmanager
async def nodes(url: str, k: int, workers: int) -> AsyncIterator[tuple[list[Engine], Any]]:
    """``k`` engines (nodes ``n0``...) on ``url``, running; and the mark plugin's recorder."""
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as tmp:
        state = Path(tmp)
        plugin_dir = state / "plugins"
        plugin_dir.mkdir()
        (plugin_dir / "bench_mark.py").write_text(MARK_PLUGIN)
        plugins = PluginHost([plugin_dir, PLUGINS], builtin=False, entry_points=False)
        plugins.load()
        recorder = sys.modules[dropin_module_name(plugin_dir / "bench_mark.py")].RECORDER
        async with AsyncExitStack() as stack:
            engines = [
                await stack.enter_async_context(
                    _node(state, plugin_dir, plugins, url, f"n{i}", workers)
                )
                for i in range(k)
            ]
            yield engines, recorder


def _listen_all(engines: list[Engine], listener: Callable[[JobEvent], None]) -> None:
    for engine in engines:
        engine.add_listener(listener)


async def handoff(url: str, n: int, k: int) -> dict[str, Any]:
    """Hand-offs of one asset between jobs on alternating nodes; see the module docstring."""
    async with nodes(url, k, 8) as (engines, recorder):
        recorder.gate = gate = anyio.Event()
        counter = Counter(n)
        waiting = 0
        running_at: dict[int, float] = {}
        node_of: dict[int, int] = {}

        def listen(event: JobEvent) -> None:
            nonlocal waiting
            if event.kind != "state":
                return
            if event.to_state == JobState.WAITING_FOR_LOCK:
                waiting += 1
                if waiting >= n - 1:
                    gate.set()
            elif event.to_state == JobState.RUNNING:
                running_at[event.job_id] = time.perf_counter()

        _listen_all(engines, listen)
        _listen_all(engines, counter)
        for i in range(n):
            job = await engines[i % k].submit(JobSpec(workflow="mark", assets=("A",)))
            node_of[job.id] = i % k
        with anyio.fail_after(TIMEOUT):
            await counter.finished.wait()
        ended = sorted(recorder.ended, key=lambda e: e[1])
        across = [
            (running_at[nxt] - end) * 1000
            for (prev, end), (nxt, _) in pairwise(ended)
            if node_of[prev] != node_of[nxt]
        ]
    return {"jobs": n, "nodes": k, "to_running_on_another_node_ms": pcts(across)}


async def locked_50ms(url: str, n: int, k: int, assets: int = 10) -> dict[str, Any]:
    """N 50 ms jobs over ``k`` nodes, each locking 1 of ``assets``; see the module docstring."""
    async with nodes(url, k, 16) as (engines, _):
        counter = Counter(n)
        _listen_all(engines, counter)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                spec = JobSpec(workflow="pause", assets=(f"asset-{i % assets}",))
                tg.start_soon(engines[i % k].submit, spec)
        with anyio.fail_after(TIMEOUT):
            await counter.finished.wait()
        wall = time.perf_counter() - t0
    ideal = assets / 0.05
    rate = n / wall
    return {
        "jobs": n,
        "nodes": k,
        "assets": assets,
        "jobs_per_s": round(rate, 1),
        "ideal_per_s": ideal,
        "of_ideal": round(rate / ideal, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--handoffs", type=int, default=200)
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--server", help="a postgresql:// URL of a role that may create databases")
    args = p.parse_args()
    server = server_url(args.server)
    out: dict[str, Any] = {"bench": "cluster_locks"}
    with fresh_database(server, "jobd_bench_locks") as url:
        out["handoff"] = anyio.run(handoff, url, args.handoffs, args.nodes)
    with fresh_database(server, "jobd_bench_locks") as url:
        out["locked_50ms"] = anyio.run(locked_50ms, url, args.jobs, args.nodes)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
