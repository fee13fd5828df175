"""Engine throughput and latency with the durable store (synchronous=FULL).

Prints one JSON line:
  jobs_per_s          N no-op jobs submitted and run end to end
  locked_jobs_per_s   the same, each job locking one of 10 assets
  due_to_running_ms   p50/p99 from submission (due at once) to `running`, at ~1,000 jobs/s

Usage: python bench/engine.py [--jobs N] [--workers W] [--inflight K]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from jobd.config import Config, DaemonConfig, Defaults, StepConfig, WorkflowConfig
from jobd.core.events import JobEvent
from jobd.core.models import JobSpec
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.store import open_store

PLUGINS = Path(__file__).parent / "plugins"
#: The event loop the daemon runs on (jobd.service.daemon picks uvloop when it is installed).
LOOP_OPTIONS = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def run(func: Any, *args: Any) -> Any:
    """``anyio.run`` on the daemon's event loop."""
    return anyio.run(func, *args, backend_options=LOOP_OPTIONS)


def bench_config(state: Path, workers: int, queue: int) -> Config:
    flow = WorkflowConfig(name="noop", steps=(StepConfig(name="n", action="noop"),))
    daemon = DaemonConfig(
        state_dir=state,
        workers=workers,
        run_queue_size=queue,
        plugin_dirs=(PLUGINS,),
        file_roots=(state,),
        synchronous="full",
    )
    return Config(daemon=daemon, defaults=Defaults(retries=0), workflows={"noop": flow})


class Counter:
    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.finished = anyio.Event()
        self.running_at: dict[int, float] = {}

    def __call__(self, event: JobEvent) -> None:
        if event.kind != "state":
            return
        if event.to_state == JobState.RUNNING:
            self.running_at[event.job_id] = time.perf_counter()
        elif event.to_state == JobState.COMPLETED:
            self.done += 1
            if self.done >= self.total:
                self.finished.set()


#: ``--database``: run the engine on this PostgreSQL database instead of SQLite in a tmp dir.
DATABASE: list[str | None] = [None]


async def _with_engine(state: Path, workers: int, queue: int, body: Any) -> Any:
    plugins = PluginHost([PLUGINS], builtin=False, entry_points=False)
    plugins.load()
    async with open_store(state / "jobd.db", synchronous="full", database=DATABASE[0]) as store:
        engine = Engine(bench_config(state, workers, queue), store, plugins)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            result = await body(engine)
            tg.cancel_scope.cancel()
    return result


def noop_specs(n: int, assets: int) -> list[JobSpec]:
    """``n`` no-op jobs, each locking one of ``assets`` assets in turn (none if 0)."""
    return [
        JobSpec(workflow="noop", assets=(f"asset-{i % assets}",) if assets else ())
        for i in range(n)
    ]


async def submit_all(engine: Engine, specs: list[JobSpec], inflight: int) -> None:
    """Submit ``specs`` from ``inflight`` concurrent submitters."""

    async def submitter(mine: list[JobSpec]) -> None:
        for spec in mine:
            await engine.submit(spec, actor="bench")

    async with anyio.create_task_group() as tg:
        for k in range(inflight):
            tg.start_soon(submitter, specs[k::inflight])


async def throughput(n: int, workers: int, inflight: int, assets: int) -> float:
    async def body(engine: Engine) -> float:
        counter = Counter(n)
        engine.add_listener(counter)
        start = time.perf_counter()
        await submit_all(engine, noop_specs(n, assets), inflight)
        await counter.finished.wait()
        return n / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as tmp:
        result: float = await _with_engine(Path(tmp), workers, max(n, 1000), body)
        return result


async def latency(n: int, rate: float, workers: int) -> dict[str, float]:
    async def body(engine: Engine) -> dict[str, float]:
        counter = Counter(n)
        engine.add_listener(counter)
        submitted: dict[int, float] = {}

        async def submit_one() -> None:
            t0 = time.perf_counter()
            job = await engine.submit(JobSpec(workflow="noop"), actor="bench")
            submitted[job.id] = t0

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                # Pace submissions: a due job every 1/rate seconds.
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                tg.start_soon(submit_one)
        await counter.finished.wait()
        lat = sorted((counter.running_at[j] - t0) * 1000 for j, t0 in submitted.items())
        return {
            "p50": round(statistics.median(lat), 3),
            "p99": round(lat[int(len(lat) * 0.99) - 1], 3),
        }

    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as tmp:
        result: dict[str, float] = await _with_engine(Path(tmp), workers, 1000, body)
        return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    DATABASE[0] = args.database
    return {
        "bench": "engine",
        "store": "postgresql" if args.database else "sqlite",
        "jobs": args.jobs,
        "workers": args.workers,
        "jobs_per_s": round(await throughput(args.jobs, args.workers, args.inflight, 0)),
        "locked_jobs_per_s": round(await throughput(args.jobs, args.workers, args.inflight, 10)),
        "due_to_running_ms": await latency(args.latency_jobs, 1000.0, args.workers),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--inflight", type=int, default=512)
    p.add_argument("--latency-jobs", type=int, default=3000)
    p.add_argument("--database", help="a postgresql:// URL of an EMPTY database (else SQLite)")
    return p.parse_args(argv)


if __name__ == "__main__":
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(json.dumps(run(main, parse(sys.argv[1:]))))
