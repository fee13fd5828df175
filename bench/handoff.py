"""Latency in the engine: lock hand-off, and due → running for jobs due from the timer.

**Hand-off.** N jobs all lock asset ``A``. The first one holds it (its action waits on
a gate) until the other N-1 are ``waiting-for-lock``; from then on each finishing job
hands the asset to the next. A bench action records ``perf_counter()`` as it returns;
the engine's listener records the next holder's ``running`` event (emitted after its
``running`` is durable). Reported: action return → lock granted (in memory; the bench
wraps ``engine.locks.release`` to timestamp the grant) and action return → next job
``running`` (durable), p50/p99. The engine releases the lock before the holder's outcome
commit, so that commit shares the waiter's batch rather than preceding it.

**Timer latency.** N jobs submitted ahead with ``start_at`` spread at ``rate`` per second
(1,000/s): the time from ``start_at`` to the ``running`` event (wall clock), p50/p99:
the same measure as APScheduler's in ``bench/peers.py``.

**Due now.** ``bench/engine.py``'s ``latency``: jobs submitted at ``rate``/s with no
start time (due at once), from ``submit()`` to ``running`` (two durable commits).

Prints one JSON line. Usage: ``python -m bench.handoff [--jobs N] [--timer-jobs N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio

from bench.engine import PLUGINS, Counter, latency
from bench.engine import run as run_loop
from jobd.config import Config, DaemonConfig, Defaults, StepConfig, WorkflowConfig
from jobd.core.events import JobEvent
from jobd.core.models import JobSpec
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost, dropin_module_name
from jobd.store import open_store

#: A drop-in written next to the state: its action stamps the time it returns.
MARK_PLUGIN = """\
from __future__ import annotations

import time

import jobd


class Recorder:
    def __init__(self) -> None:
        self.gate = None  # an anyio.Event: the first holder waits on it
        self.ended: list[tuple[int, float]] = []


RECORDER = Recorder()


async def mark(ctx, **params):
    r = RECORDER
    if r.gate is not None and not r.gate.is_set():
        await r.gate.wait()
    r.ended.append((ctx.job_id, time.perf_counter()))


@jobd.hookimpl
def jobd_actions():
    return [jobd.Action("bench_mark", mark, "stamps when it returns (bench/handoff.py)")]
"""


def pcts(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3),
        "n": len(ordered),
    }


def _config(state: Path, plugin_dir: Path, workers: int, queue: int) -> Config:
    flows = {
        "mark": WorkflowConfig(name="mark", steps=(StepConfig(name="m", action="bench_mark"),)),
        "noop": WorkflowConfig(name="noop", steps=(StepConfig(name="n", action="noop"),)),
    }
    daemon = DaemonConfig(
        state_dir=state,
        workers=workers,
        run_queue_size=queue,
        plugin_dirs=(plugin_dir, PLUGINS),
        file_roots=(state,),
        synchronous="full",
    )
    return Config(daemon=daemon, defaults=Defaults(retries=0), workflows=flows)


async def _with_engine(workers: int, queue: int, body: Any) -> Any:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as tmp:
        state = Path(tmp)
        plugin_dir = state / "plugins"
        plugin_dir.mkdir()
        (plugin_dir / "bench_mark.py").write_text(MARK_PLUGIN)
        plugins = PluginHost([plugin_dir, PLUGINS], builtin=False, entry_points=False)
        plugins.load()
        recorder = sys.modules[dropin_module_name(plugin_dir / "bench_mark.py")].RECORDER
        async with open_store(state / "jobd.db", synchronous="full") as store:
            engine = Engine(_config(state, plugin_dir, workers, queue), store, plugins)
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                result = await body(engine, recorder)
                tg.cancel_scope.cancel()
        return result


async def handoff(n: int, workers: int = 8) -> dict[str, Any]:
    """Hand-offs of one asset between ``n`` jobs; see the module docstring."""

    async def body(engine: Engine, recorder: Any) -> dict[str, Any]:
        recorder.gate = gate = anyio.Event()
        counter = Counter(n)
        waiting = 0
        granted_at: dict[int, float] = {}
        running_at: dict[int, float] = {}

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

        release = engine.locks.release

        def timed_release(owner: int) -> list[int]:
            granted = release(owner)
            now = time.perf_counter()
            for job_id in granted:
                granted_at[job_id] = now
            return granted

        engine.locks.release = timed_release  # type: ignore[method-assign]
        engine.add_listener(listen)
        engine.add_listener(counter)
        for _ in range(n):
            await engine.submit(JobSpec(workflow="mark", assets=("A",)), actor="bench")
        await counter.finished.wait()
        ended = sorted(recorder.ended, key=lambda e: e[1])
        to_grant, to_running = [], []
        for (_, end), (nxt, _) in pairwise(ended):
            to_grant.append((granted_at[nxt] - end) * 1000)
            to_running.append((running_at[nxt] - end) * 1000)
        return {
            "jobs": n,
            "workers": workers,
            "to_grant_ms": pcts(to_grant),
            "to_running_ms": pcts(to_running),
        }

    result: dict[str, Any] = await _with_engine(workers, max(n, 1000), body)
    return result


async def timer_rows(
    n: int, rate: float = 1000.0, workers: int = 8, lead: float = 1.5
) -> dict[str, Any]:
    """Jobs due from the timer at ``rate``/s: each job's ``start_at`` and the latency from it
    to its ``running`` event (wall clock, ms), in ``start_at`` order; ``first``: the first
    ``start_at``; ``submitted_late``: whether submitting took longer than ``lead``."""

    async def body(engine: Engine, recorder: Any) -> dict[str, Any]:
        counter = Counter(n)
        running_wall: dict[int, float] = {}

        def listen(event: JobEvent) -> None:
            if event.kind == "state" and event.to_state == JobState.RUNNING:
                running_wall[event.job_id] = time.time()

        engine.add_listener(listen)
        engine.add_listener(counter)
        first = time.time() + lead
        starts: dict[int, float] = {}

        async def submit(mine: range) -> None:
            for i in mine:
                start_at = first + i / rate
                job = await engine.submit(
                    JobSpec(workflow="noop", start_at=start_at), actor="bench"
                )
                starts[job.id] = start_at

        async with anyio.create_task_group() as tg:
            for k in range(64):
                tg.start_soon(submit, range(k, n, 64))
        late = time.time() > first
        await counter.finished.wait()
        rows = sorted((s, (running_wall[j] - s) * 1000) for j, s in starts.items())
        return {"first": first, "rows": rows, "submitted_late": late}

    result: dict[str, Any] = await _with_engine(workers, 1000, body)
    return result


async def timer_latency(
    n: int, rate: float = 1000.0, workers: int = 8, lead: float = 1.5
) -> dict[str, Any]:
    """Jobs due from the timer at ``rate``/s: ``start_at`` → ``running`` (wall clock)."""
    run = await timer_rows(n, rate, workers, lead)
    return {
        "jobs": n,
        "rate": rate,
        "workers": workers,
        "submitted_late": run["submitted_late"],
        "due_to_running_ms": pcts([lat for _, lat in run["rows"]]),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=500, help="jobs handing one asset over")
    p.add_argument("--timer-jobs", type=int, default=3000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument(
        "--due-now-jobs",
        type=int,
        default=3000,
        help="for bench/engine.py's latency (submitted due at once)",
    )
    args = p.parse_args(argv)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    out = {
        "bench": "handoff",
        "handoff": run_loop(handoff, args.jobs, args.workers),
        "timer": run_loop(timer_latency, args.timer_jobs, args.rate, args.workers),
        "due_now": {
            "jobs": args.due_now_jobs,
            "rate": args.rate,
            "workers": args.workers,
            "due_to_running_ms": run_loop(latency, args.due_now_jobs, args.rate, args.workers),
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
