"""Durable end-to-end throughput of the engine by number of workers, with and without locks.

Reuses ``bench/engine.py``'s ``throughput(n, workers, inflight, assets)``: N no-op jobs
submitted by ``inflight`` concurrent submitters into an engine on a real SQLite file
(``synchronous=FULL``), timed until the last one is ``completed``. ``assets=10`` makes
each job lock one of 10 assets (exclusive). Each figure is the median of ``--repeat``
runs (fsync on a virtual disk is erratic); the samples are kept in the output.

Fewer workers run fewer jobs (see :func:`jobs_for`) so that a run stays short.

Usage::

    python -m bench.workers [--jobs N] [--workers 1,2,4,8,64] [--locked 8,64] [--repeat R]
    python -m bench.workers --profile cprofile|pyinstrument [--workers 8] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.engine import Counter, _with_engine, noop_specs, submit_all, throughput
from bench.engine import run as run_loop
from jobd.engine import Engine

INFLIGHT = 512


def jobs_for(n: int, workers: int) -> int:
    """Fewer jobs for fewer workers (each is slower), never under 2,000."""
    return min(n, max(2000, n * workers // 8))


def median_of(
    repeat: int, n: int, workers: int, assets: int, inflight: int = INFLIGHT
) -> dict[str, Any]:
    samples = [run_loop(throughput, n, workers, inflight, assets) for _ in range(repeat)]
    return {
        "jobs": n,
        "workers": workers,
        "assets": assets,
        "inflight": inflight,
        "jobs_per_s": round(statistics.median(samples)),
        "samples": [round(s) for s in samples],
    }


def sweep(n: int, workers: list[int], locked: list[int], repeat: int) -> dict[str, Any]:
    plain = [median_of(repeat, jobs_for(n, w), w, 0) for w in workers]
    with_locks = [median_of(repeat, jobs_for(n, w), w, 10) for w in locked]
    return {"plain": plain, "locked": with_locks}


def profile(kind: str, n: int, workers: int, assets: int) -> None:
    """Profile one throughput run of the event loop thread; the report goes to stderr."""
    if kind == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        rate = run_loop(throughput, n, workers, INFLIGHT, assets)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    else:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        rate = prof.runcall(run_loop, throughput, n, workers, INFLIGHT, assets)
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)
    print(
        json.dumps(
            {
                "bench": "workers-profile",
                "profiler": kind,
                "jobs": n,
                "workers": workers,
                "assets": assets,
                "jobs_per_s": round(rate),
            }
        )
    )


async def _breakdown_body(engine: Engine, n: int, assets: int) -> dict[str, Any]:
    store = engine.store
    writer = store._writer
    batch_s: list[float] = []
    sent_at: list[float] = []
    send, pipes = writer.send, writer._pipes
    answered = pipes.on_frame

    def timed_send(units: list[Any]) -> None:
        sent_at.append(time.perf_counter())
        send(units)

    def timed_answer(frame: Any) -> None:
        batch_s.append(time.perf_counter() - sent_at.pop(0))
        answered(frame)

    writer.send = timed_send  # type: ignore[method-assign]
    pipes.on_frame = timed_answer
    writer_cpu0 = _process_cpu(writer.pid)
    counter = Counter(n)
    engine.add_listener(counter)
    specs = noop_specs(n, assets)
    b0, u0 = store.batches, store.units
    cpu0, loop0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    await submit_all(engine, specs, INFLIGHT)
    await counter.finished.wait()
    wall = time.perf_counter() - t0
    cpu, loop = time.process_time() - cpu0, time.thread_time() - loop0
    writer_cpu = _process_cpu(writer.pid) - writer_cpu0
    batches, units = store.batches - b0, store.units - u0
    return {
        "jobs_per_s": round(n / wall),
        "loop_cpu_us_per_job": round(loop / n * 1e6, 1),
        "other_threads_cpu_us_per_job": round((cpu - loop) / n * 1e6, 1),
        "writer_process_cpu_us_per_job": round(writer_cpu / n * 1e6, 1),
        "loop_busy_pct": round(100 * loop / wall),
        "commits_per_job": round(units / n, 2),
        "units_per_batch": round(units / max(batches, 1), 1),
        "batch_ms_p50": round(statistics.median(batch_s) * 1000, 3),
        "batch_ms_p99": round(sorted(batch_s)[int(len(batch_s) * 0.99)] * 1000, 3),
    }


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def breakdown(n: int, workers: int, assets: int = 0) -> dict[str, Any]:
    """Where one run's time goes: event-loop CPU, other threads, the writer process, batch sizes and
    batch latency (one BEGIN..COMMIT with its fsync, from sending the batch to the answer)."""

    async def go() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="jobd-bench-") as tmp:
            result: dict[str, Any] = await _with_engine(
                Path(tmp), workers, max(n, 1000), partial(_breakdown_body, n=n, assets=assets)
            )
            return result

    return {"jobs": n, "workers": workers, "assets": assets, **run_loop(go)}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--workers", type=_ints, default=[1, 2, 4, 8, 64])
    p.add_argument("--locked", type=_ints, default=[8, 64])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", choices=["cprofile", "pyinstrument"])
    p.add_argument("--assets", type=int, default=0, help="with --profile/--breakdown")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="loop and writer-process CPU per job, batch sizes and latency",
    )
    args = p.parse_args(argv)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    if args.profile:
        profile(args.profile, args.jobs, args.workers[0], args.assets)
        return
    if args.breakdown:
        print(
            json.dumps(
                {
                    "bench": "workers-breakdown",
                    "runs": [breakdown(args.jobs, w, args.assets) for w in args.workers],
                }
            )
        )
        return
    print(
        json.dumps({"bench": "workers", **sweep(args.jobs, args.workers, args.locked, args.repeat)})
    )


if __name__ == "__main__":
    main()
