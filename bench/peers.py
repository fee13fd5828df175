"""The peers, measured the way jobd is: durable no-op jobs end to end, and timer latency.

Needs ``huey`` and ``sqlalchemy`` (``bench/requirements.txt``): run it from
``bench/.venv`` (``bench/run`` makes it); they are not jobd's dependencies.

* **huey** ``SqliteHuey`` (its SQLite storage, WAL, ``synchronous=FULL`` like jobd's),
  an in-process consumer with 4 thread workers (polling every 10 ms when idle instead of
  huey's default 100 ms, in huey's favour). N no-op tasks are enqueued from the main
  thread while the consumer runs; timed from the first enqueue until the N-th result is
  stored (``SIGNAL_COMPLETE`` fires after ``put_result``).
* **APScheduler 3** ``AsyncIOScheduler``: N date-trigger jobs due now, added while the
  scheduler runs, each calling an ``async`` no-op that counts; timed until the N-th ran.
  With ``MemoryJobStore`` (not durable) and with ``SQLAlchemyJobStore`` on a SQLite file
  (SQLite's defaults: rollback journal, ``synchronous=FULL``). Misfire grace is disabled
  so that a late job runs instead of being dropped.
* **APScheduler latency**: N jobs scheduled ahead at ``rate``/s (memory store); actual
  start minus scheduled time, p50/p99.

None of them has per-asset locks: the locked figure is jobd's alone.

Prints one JSON line. Usage: ``python -m bench.peers [--huey N] [--aps N] [--aps-sql N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------- huey


def huey_throughput(n: int, workers: int = 4) -> float:
    """Tasks/s: enqueue N no-op tasks into SqliteHuey, until all results are stored."""
    from huey import SqliteHuey
    from huey.consumer import Consumer
    from huey.signals import SIGNAL_COMPLETE

    with tempfile.TemporaryDirectory(prefix="huey-bench-") as tmp:
        huey = SqliteHuey("bench", filename=str(Path(tmp) / "huey.db"), fsync=True, results=True)
        done = threading.Event()
        lock = threading.Lock()
        count = 0

        @huey.task()
        def noop() -> int:
            return 1

        @huey.signal(SIGNAL_COMPLETE)
        def completed(signal: str, task: Any) -> None:
            nonlocal count
            with lock:
                count += 1
                if count >= n:
                    done.set()

        consumer = Consumer(
            huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            initial_delay=0.01,
            check_worker_health=False,
        )
        consumer.start()
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                noop()
            if not done.wait(timeout=600):
                raise RuntimeError(f"huey ran {count} of {n} tasks in 600 s")
            return n / (time.perf_counter() - t0)
        finally:
            consumer.stop(graceful=True)
            huey.storage.close()


# ----------------------------------------------------------------------------- APScheduler


class _Count:
    """What the no-op job counts into (module level: the SQL store pickles a reference)."""

    ran = 0
    target = 0
    done: asyncio.Event | None = None
    late_ms: list[float] = []


async def aps_noop() -> None:
    _Count.ran += 1
    if _Count.ran >= _Count.target and _Count.done is not None:
        _Count.done.set()


async def aps_stamp(scheduled: float) -> None:
    _Count.late_ms.append((time.time() - scheduled) * 1000)
    await aps_noop()


def _scheduler(store: str, tmp: Path) -> Any:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    if store == "sqlalchemy":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        jobstore: Any = SQLAlchemyJobStore(url=f"sqlite:///{tmp / 'aps.db'}")
    else:
        from apscheduler.jobstores.memory import MemoryJobStore

        jobstore = MemoryJobStore()
    return AsyncIOScheduler(
        jobstores={"default": jobstore},
        timezone=UTC,
        job_defaults={"misfire_grace_time": None, "coalesce": False},
    )


async def _aps_throughput(n: int, store: str) -> float:
    from apscheduler.triggers.date import DateTrigger

    with tempfile.TemporaryDirectory(prefix="aps-bench-") as tmp:
        scheduler = _scheduler(store, Path(tmp))
        _Count.ran, _Count.target, _Count.done = 0, n, asyncio.Event()
        scheduler.start()
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                scheduler.add_job(aps_noop, DateTrigger(datetime.now(UTC)))
                await asyncio.sleep(0)  # let the scheduler interleave, as a live API would
            await asyncio.wait_for(_Count.done.wait(), timeout=600)
            return n / (time.perf_counter() - t0)
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)


def aps_throughput(n: int, store: str = "memory") -> float:
    """Jobs/s: N date-trigger jobs due now added to a running AsyncIOScheduler."""
    return asyncio.run(_aps_throughput(n, store))


async def _aps_latency(n: int, rate: float, lead: float) -> dict[str, Any]:
    from apscheduler.triggers.date import DateTrigger

    with tempfile.TemporaryDirectory(prefix="aps-bench-") as tmp:
        scheduler = _scheduler("memory", Path(tmp))
        _Count.ran, _Count.target, _Count.done = 0, n, asyncio.Event()
        _Count.late_ms = []
        scheduler.start()
        try:
            first = time.time() + lead
            for i in range(n):
                at = first + i / rate
                scheduler.add_job(
                    aps_stamp, DateTrigger(datetime.fromtimestamp(at, UTC)), args=[at]
                )
            late = time.time() > first
            await asyncio.wait_for(_Count.done.wait(), timeout=600)
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)
        ordered = sorted(_Count.late_ms)
        return {
            "jobs": n,
            "rate": rate,
            "scheduled_late": late,
            "p50": round(statistics.median(ordered), 3),
            "p99": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3),
        }


def aps_latency(n: int, rate: float = 1000.0, lead: float = 1.5) -> dict[str, Any]:
    """Scheduled time → actual start (ms) for N memory-store jobs due at ``rate``/s."""
    return asyncio.run(_aps_latency(n, rate, lead))


def _median(repeat: int, fn: Any, *args: Any) -> dict[str, Any]:
    samples = [fn(*args) for _ in range(repeat)]
    return {"per_s": round(statistics.median(samples)), "samples": [round(s) for s in samples]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--huey", type=int, default=3000, help="tasks for huey")
    p.add_argument("--aps", type=int, default=10000, help="jobs for APScheduler (memory)")
    p.add_argument("--aps-sql", type=int, default=1000, help="jobs for the SQLAlchemy store")
    p.add_argument("--latency-jobs", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    logging.getLogger("huey").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    from importlib.metadata import version

    print(
        json.dumps(
            {
                "bench": "peers",
                "versions": {name: version(name) for name in ("huey", "APScheduler", "SQLAlchemy")},
                "huey_sqlite_4_threads": {
                    "jobs": args.huey,
                    **_median(args.repeat, huey_throughput, args.huey),
                },
                "apscheduler_memory": {
                    "jobs": args.aps,
                    **_median(args.repeat, aps_throughput, args.aps, "memory"),
                },
                "apscheduler_sqlalchemy_sqlite": {
                    "jobs": args.aps_sql,
                    **_median(args.repeat, aps_throughput, args.aps_sql, "sqlalchemy"),
                },
                "apscheduler_memory_latency_ms": aps_latency(args.latency_jobs),
            }
        )
    )


if __name__ == "__main__":
    main()
