"""Memory and start-up with many scheduled jobs: the real daemon over a full database.

The database is created by ``jobd.store.open_store`` (the real schema and migrations),
then filled in bulk with stdlib ``sqlite3`` (``executemany``, one transaction): N
``confirmed`` no-op jobs due in the future (from tomorrow, one per second), each with
its step and its ``submitted`` history row, in the formats of
the SQLite store's ``insert_job``/``insert_step`` intents (the rows are built by them).
Then ``python -m jobd run`` is started twice (a start, then a restart after SIGTERM),
each timed from spawn to ``READY=1``; RSS (``VmRSS``) and peak RSS (``VmHWM``) are read
from ``/proc/<pid>/status`` at READY and again after the daemon has idled a moment.
After the restart, 20 jobs are submitted due a second later, 50 ms apart, and their
``start_at`` → ``running`` delay is read from the daemon's own history: the due path
over a big table. The same with an empty database, for comparison. ``--booked`` (not in the suite's
default run) gives every job a 10 s reservation of one of 20 resources too, which the
daemon loads into its booking index at start.

Prints one JSON line. Usage: ``python -m bench.scale [--jobs N] [--keep-db PATH]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.api import daemon, short_dir, write_config
from jobd.core.models import Job, JobSpec, Step
from jobd.core.states import JobState, StepState
from jobd.store import open_store
from jobd.store.sqlite import job_insert, sqlwriter, step_insert
from jobd.store.sqlite.queries import INSERT_HISTORY as HISTORY_INSERT

BATCH = 50_000
IDLE = 1.0  # s after READY before the second memory reading
#: With --booked, job i books RESOURCES[i % 20] for 10 s at start_at (jobs are 1 s apart:
#: no two bookings of one resource overlap).
RESOURCES = [f"res-{i:02d}" for i in range(20)]
RESERVATION_INSERT = (
    'INSERT INTO reservations (job_id, resource, start, "end", pool)'
    " VALUES (?,?,?,?,?)"
)  # as jobd.engine writes it
Rows = list[tuple[Any, ...]]


def _rows(
    n: int, first_start: float, now: float, booked: bool
) -> Iterator[tuple[Rows, Rows, Rows, Rows]]:
    jobs: Rows = []
    steps: Rows = []
    history: Rows = []
    bookings: Rows = []
    for job_id in range(1, n + 1):
        start = first_start + job_id
        resource = RESOURCES[job_id % len(RESOURCES)]
        spec = (
            JobSpec(workflow="noop", start_at=start, end_at=start + 10, resources=(resource,))
            if booked
            else JobSpec(workflow="noop", start_at=start)
        )
        job = Job(
            id=job_id,
            spec=spec,
            state=JobState.CONFIRMED,
            created_at=now,
            updated_at=now,
            due_at=spec.due_at,
        )
        step = Step(
            job_id=job_id,
            idx=0,
            name="n",
            action="noop",
            params={},
            state=StepState.QUEUED,
            timeout=3600.0,
            retries=0,
            retry_backoff=5.0,
        )
        jobs.append(job_insert(job)[1])
        steps.append(step_insert(step)[1])
        history.append((job_id, now, None, str(JobState.CONFIRMED), "submitted", "bench"))
        if booked:
            bookings.append((job_id, resource, start, start + 10, None))
        if len(jobs) >= BATCH:
            yield jobs, steps, history, bookings
            jobs, steps, history, bookings = [], [], [], []
    if jobs:
        yield jobs, steps, history, bookings


def populate(db: Path, n: int, booked: bool = False) -> float:
    """Create ``db`` with jobd's schema and N future confirmed jobs; returns seconds taken."""
    t0 = time.perf_counter()

    async def create() -> None:
        async with open_store(db, synchronous="full"):
            pass

    anyio.run(create)
    now = time.time()
    template = Job(
        id=0,
        spec=JobSpec(workflow="noop"),
        state=JobState.CONFIRMED,
        created_at=now,
        updated_at=now,
    )
    job_sql = job_insert(template)[0]
    step_sql = step_insert(Step(job_id=0, idx=0, name="n", action="noop", params={}))[0]
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # loading only; the daemon sets its own
        conn.execute("BEGIN")
        for jobs, steps, history, bookings in _rows(n, now + 86400.0, now, booked):
            conn.executemany(job_sql, jobs)
            conn.executemany(step_sql, steps)
            conn.executemany(HISTORY_INSERT, history)
            conn.executemany(RESERVATION_INSERT, bookings)
        sqlwriter.index_names(conn)  # the names, as the writer indexes them
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def due_latency(
    sock: Path, count: int = 20, spacing: float = 0.05, lead: float = 1.0
) -> dict[str, Any]:
    """Submit ``count`` jobs due ``lead`` s ahead, ``spacing`` s apart; from the daemon's own
    history, ``start_at`` → ``running`` in ms (p50, max). Over a big table, each due wake-up
    pays for the queries that find the due jobs and the next wake-up time."""
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://jobd", timeout=120) as client:
        first = time.time() + lead
        ids = {}
        for i in range(count):
            at = datetime.fromtimestamp(first + i * spacing, UTC).isoformat()
            r = client.post("/v1/jobs", json={"workflow": "noop", "start_at": at})
            r.raise_for_status()
            ids[r.json()["id"]] = first + i * spacing
        deadline = time.monotonic() + 120 + count * 2
        late: list[float] = []
        for job_id, start_at in ids.items():
            while True:
                job = client.get(f"/v1/jobs/{job_id}").json()
                running = [h for h in job["history"] if h["to"] == "running"]
                if running:
                    at = datetime.fromisoformat(running[0]["at"]).timestamp()
                    late.append((at - start_at) * 1000)
                    break
                if time.monotonic() > deadline:
                    return {"jobs": count, "ran": len(late), "error": "not all ran in time"}
                time.sleep(0.05)  # polling a daemon from outside; not a timing
    late.sort()
    return {
        "jobs": count,
        "p50_ms": round(statistics.median(late), 1),
        "max_ms": round(late[-1], 1),
    }


def start_once(base: Path, config: Path, latency: bool = False) -> dict[str, Any]:
    with daemon(base, config) as d:
        at_ready = d.status()
        time.sleep(IDLE)  # let the daemon settle (not a timing: the memory after idling)
        settled = d.status()
        due = due_latency(d.socket) if latency else None
        t0 = time.perf_counter()
        d.proc.terminate()
        d.proc.wait(timeout=120)
        return {
            "ready_s": round(d.ready_s, 3),
            "rss_mb_at_ready": _mb(at_ready["VmRSS"]),
            "rss_mb": _mb(settled["VmRSS"]),
            "peak_rss_mb": _mb(settled["VmHWM"]),
            "stop_s": round(time.perf_counter() - t0, 3),
            **({"due_to_running": due} if due is not None else {}),
        }


def run(n: int, keep_db: Path | None = None, booked: bool = False) -> dict[str, Any]:
    base = short_dir()
    try:
        extra = "".join(f"\n[resources.{r}]\n" for r in RESOURCES) if booked else ""
        config = write_config(base, level="warning", extra=extra)
        db = base / "state" / "jobd.db"
        db.parent.mkdir(parents=True)
        if keep_db is not None and keep_db.exists():
            shutil.copy(keep_db, db)
            load_s = None
        else:
            load_s = round(populate(db, n, booked), 1)
            if keep_db is not None:
                shutil.copy(db, keep_db)
        size = db.stat().st_size
        first = start_once(base, config)
        second = start_once(base, config, latency=True)
        return {
            "jobs": n,
            "booked": booked,
            "db_mb": round(size / 2**20, 1),
            "populate_s": load_s,
            "start": first,
            "restart": second,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--no-empty", action="store_true", help="skip the empty-database run")
    p.add_argument(
        "--booked",
        action="store_true",
        help="each job also books a resource (the booking index is loaded at start)",
    )
    p.add_argument(
        "--keep-db",
        type=Path,
        help="reuse this populated database if it exists (else write it there)",
    )
    args = p.parse_args(argv)
    out: dict[str, Any] = {"bench": "scale", "full": run(args.jobs, args.keep_db, args.booked)}
    if not args.no_empty:
        out["empty"] = run(0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
