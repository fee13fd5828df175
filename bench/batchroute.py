"""The batch route's CPU per job, phase by phase, in-process: a real engine, store and
writer process, the route's own functions called as the hot path calls them.

Jobs are due tomorrow (``--due-now`` runs them as they come), so the figure is the
route's: the body read and validated, the specs, the engine's intake and its store
unit, the answer built and encoded. CPU is this process's (``time.process_time``: the
writer process, on the other core, is not counted); ``--profile FILE`` writes a
cProfile of the whole run (CPU clock). Prints one JSON line.

Usage: ``python -m bench.batchroute [--batches N] [--batch B] [--due-now] [--profile F]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from bench.api import short_dir, write_config
from jobd.config import load_config
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.service.api.bodies import BatchJobsBody
from jobd.service.api.parse import load_json, validate_body
from jobd.service.api.shapes import answer_response, job_json
from jobd.service.api.submit import specs_of
from jobd.service.daemon import tune_gc
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


async def run(batches: int, batch: int, due_now: bool, profile: Path | None) -> dict[str, Any]:
    base = short_dir()
    try:
        config = load_config(write_config(base, workers=64, queue=4 * batch, level="warning"))
        plugins = PluginHost(config.daemon.plugin_dirs)
        plugins.load()
        raw = _body(batch, due_now)
        cpu = dict.fromkeys(PHASES, 0.0)
        async with open_store(config.daemon.db_path, synchronous="full") as store:
            engine = Engine(config, store, plugins)
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                await _one_batch(engine, raw, dict.fromkeys(PHASES, 0.0))  # warm up
                gc.collect()
                tune_gc()
                prof = cProfile.Profile(time.process_time) if profile else None
                cpu0, t0 = time.process_time(), time.perf_counter()
                if prof:
                    prof.enable()
                size = 0
                for _ in range(batches):
                    size = await _one_batch(engine, raw, cpu)
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
            "cpu_us_per_job": round(total / n * 1e6, 1),
            "phases_us_per_job": {k: round(v / n * 1e6, 1) for k, v in cpu.items()},
            "wall_s": round(wall, 2),
            "answer_bytes_per_job": round(size / batch),
            "load": round(os.getloadavg()[0], 1),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--due-now", action="store_true", help="jobs due at once (they run)")
    p.add_argument("--profile", type=Path, help="write a cProfile (CPU clock) here")
    args = p.parse_args(argv)
    print(json.dumps(anyio.run(run, args.batches, args.batch, args.due_now, args.profile)))


if __name__ == "__main__":
    main()
