"""The batch route's CPU per job, phase by phase, in-process: a real engine, store and
writer process, the route's own functions called as the hot path calls them.

Jobs are due tomorrow (``--due-now`` runs them as they come), so the figure is the
route's: the body read and validated, the specs, the engine's intake and its store
unit, the answer built and encoded. CPU is this process's (``time.process_time``: the
writer process, on the other core, is not counted); ``--profile FILE`` writes a
cProfile of the whole run (CPU clock). Prints one JSON line.

``--wait`` (implies ``--due-now``): each batch's jobs run, and the run ends when all have
completed, so the figure is the whole in-process path (the route, then every job's run).
``--callgrind`` counts the event loop's instructions (the main thread; the writer process
is not traced) of two such runs, ``--sizes`` batches each, under ``valgrind --tool=callgrind``,
and prints the difference per extra job (start-up drops out); ``--tree PATH`` measures
another checkout's ``jobd`` with this driver (A/B).

Usage: ``python -m bench.batchroute [--batches N] [--batch B] [--due-now] [--wait]
[--profile F] [--callgrind [--sizes 2,4] [--tree PATH]]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from bench.api import short_dir, write_config
from bench.engine import LOOP_OPTIONS, Counter
from jobd.config import load_config
from jobd.core.events import JobEvent
from jobd.core.states import JobState
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.service.api.bodies import BatchJobsBody
from jobd.service.api.parse import load_json, validate_body
from jobd.service.api.shapes import answer_response, job_json
from jobd.service.api.submit import specs_of
from jobd.service.daemon import tune_gc
from jobd.service.metrics import Metrics
from jobd.store import open_store

PHASES = ("parse", "validate", "specs", "submit_many", "job_json", "encode")


def _body(batch: int, due_now: bool) -> bytes:
    job: dict[str, Any] = {"workflow": "noop"}
    if not due_now:
        job["start_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return json.dumps({"jobs": [job] * batch}).encode()


async def _one_batch(engine: Engine, raw: bytes, cpu: dict[str, float]) -> int:
    """What ``submit_batch_body`` and ``answer_response`` do, each phase timed."""
    clock = time.process_time
    t = clock()
    data = load_json(raw, "application/json")
    t, cpu["parse"] = clock(), cpu["parse"] + clock() - t
    body = validate_body(data, BatchJobsBody)
    t, cpu["validate"] = clock(), cpu["validate"] + clock() - t
    specs = specs_of(body)
    t, cpu["specs"] = clock(), cpu["specs"] + clock() - t
    jobs = await engine.submit_many(specs, actor="bench")
    t, cpu["submit_many"] = clock(), cpu["submit_many"] + clock() - t
    content = {"items": [job_json(job) for job in jobs]}
    t, cpu["job_json"] = clock(), cpu["job_json"] + clock() - t
    out = answer_response((201, content, {}))
    cpu["encode"] += clock() - t
    return len(out.body)


async def run(
    batches: int,
    batch: int,
    due_now: bool,
    profile: Path | None,
    wait: bool = False,
    queue: int = 0,
) -> dict[str, Any]:
    base = short_dir()
    try:
        size = queue or 4 * batch
        config = load_config(write_config(base, workers=64, queue=size, level="warning"))
        plugins = PluginHost(config.daemon.plugin_dirs)
        plugins.load()
        raw = _body(batch, due_now)
        cpu = dict.fromkeys(PHASES, 0.0)
        async with open_store(config.daemon.db_path, synchronous="full") as store:
            engine = Engine(config, store, plugins)
            engine.add_listener(Metrics(engine).observe)  # as the daemon does
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                warm = Counter(batch)
                engine.add_listener(warm)
                await _one_batch(engine, raw, dict.fromkeys(PHASES, 0.0))  # warm up
                if wait:
                    await warm.finished.wait()
                counter = Counter(batch * (batches + 1))
                counter.done = warm.done
                engine.add_listener(counter)
                pending = [0]  # jobs that went `pending` (the run queue was full)

                def count_pending(event: JobEvent) -> None:
                    if event.kind == "state" and event.to_state == JobState.PENDING:
                        pending[0] += 1

                engine.add_listener(count_pending)
                gc.collect()
                tune_gc()
                prof = cProfile.Profile(time.process_time) if profile else None
                cpu0, t0 = time.process_time(), time.perf_counter()
                if prof:
                    prof.enable()
                size = 0
                for _ in range(batches):
                    size = await _one_batch(engine, raw, cpu)
                if wait:
                    await counter.finished.wait()
                if prof:
                    prof.disable()
                    prof.dump_stats(profile)
                total = time.process_time() - cpu0
                wall = time.perf_counter() - t0
                tg.cancel_scope.cancel()
        n = batches * batch
        return {
            "jobs": n,
            "batch": batch,
            "due_now": due_now,
            "waited": wait,
            "queue": queue or 4 * batch,
            "went_pending": pending[0],
            "cpu_us_per_job": round(total / n * 1e6, 1),
            "phases_us_per_job": {k: round(v / n * 1e6, 1) for k, v in cpu.items()},
            "wall_s": round(wall, 2),
            "answer_bytes_per_job": round(size / batch),
            "load": round(os.getloadavg()[0], 1),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def loop_instructions(tree: Path, batches: int, batch: int, queue: int = 0) -> list[int]:
    """Instructions of one ``--wait`` run: the main thread's (the event loop), then every
    thread's (the reader thread too: the store's reads run there, holding the GIL)."""
    from bench.loopcost import read_total

    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="jobd-cg-") as tmp:
        out = Path(tmp) / "cg"
        env = {**os.environ, "PYTHONPATH": f"{tree}:{here}", "PYTHONHASHSEED": "0"}
        argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
        argv += [f"--callgrind-out-file={out}", sys.executable, "-m", "bench.batchroute"]
        argv += ["--wait", "--batches", str(batches), "--batch", str(batch)]
        argv += ["--queue", str(queue)]
        subprocess.run(argv, env=env, check=True, capture_output=True, cwd=tmp)
        threads = sorted(Path(tmp).glob("cg-*"))
        return [read_total(out.with_name("cg-01")), sum(read_total(t) for t in threads)]


def callgrind(tree: Path, sizes: list[int], batch: int, queue: int = 0) -> dict[str, Any]:
    counts = [loop_instructions(tree, n, batch, queue) for n in sizes]
    extra = (sizes[-1] - sizes[0]) * batch
    return {
        "bench": "batchroute-callgrind",
        "tree": str(tree),
        "batch": batch,
        "queue": queue or 4 * batch,
        "sizes": sizes,
        "loop_instructions": [c[0] for c in counts],
        "all_threads_instructions": [c[1] for c in counts],
        "per_job": round((counts[-1][0] - counts[0][0]) / extra),
        "per_job_all_threads": round((counts[-1][1] - counts[0][1]) / extra),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--due-now", action="store_true", help="jobs due at once (they run)")
    p.add_argument("--queue", type=int, default=0, help="run_queue_size (default 4 batches)")
    p.add_argument("--wait", action="store_true", help="due at once, run until all completed")
    p.add_argument("--profile", type=Path, help="write a cProfile (CPU clock) here")
    p.add_argument("--callgrind", action="store_true", help="instructions per job (valgrind)")
    p.add_argument("--sizes", default="2,4", help="--callgrind: batches of the two runs")
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    args = p.parse_args(argv)
    if args.callgrind:
        sizes = [int(x) for x in args.sizes.split(",")]
        print(json.dumps(callgrind(args.tree.resolve(), sizes, args.batch, args.queue)))
        return
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warning
    due_now = args.due_now or args.wait
    out = anyio.run(
        run,
        args.batches,
        args.batch,
        due_now,
        args.profile,
        args.wait,
        args.queue,
        backend_options=LOOP_OPTIONS,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
