"""The batch routes and the list filters, against the real daemon over its Unix socket.

* ``submit``: N no-op jobs posted with httpx in batches (``POST /v1/batch/jobs``), from the
  first request until every job has completed (the daemon runs them while the client
  posts; ``--workers``, 256 by default); huey's in-process enqueue-and-run of M tasks
  measured in the same run (``bench/peers.py``; needs ``bench/.venv``) for the ratio.
* ``cancel``: 10,000 queued jobs (one worker, held by a job that waits for a file) canceled
  by ``POST /v1/batch/cancel {"filter": {"state": ["queued"]}}``: the request's time.
* ``list``: a database of N jobs filled in bulk (the real schema and its triggers: the
  filter tables fill as the daemon's writes would), then ``GET /v1/jobs`` pages with each
  filter through the daemon: the median, p99 and max of each over repeats, with the load
  average. ``--list-db PATH`` keeps the filled database there and reuses it next time.

Prints one JSON line. Usage:
``python -m bench.batch [--jobs N] [--batch B] [--list-jobs N] [--list-db PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import time
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

HOLD = """
[workflows.hold]
steps = [ { name = "h", action = "hold", params = { path = "{path}" } } ]
"""


def _client(sock: Path) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(sock))
    return httpx.Client(transport=transport, base_url="http://jobd", timeout=120)


def _wait_idle(client: httpx.Client, last_id: int, timeout: float = 600) -> None:
    """Until the last job completed and nothing is queued, pending or running (polling: a
    benchmark, not a test; the queue, whose answer lists every queued id, only at the end)."""
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/jobs/{last_id}").json()["state"] != "completed":
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not complete in time")
        time.sleep(0.02)
    while True:
        q = client.get("/v1/queue").json()
        if not (q["queued"] or q["running"] or q["pending"]):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not complete in time")
        time.sleep(0.02)


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (the daemon's own, without its writer)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def submit(n: int, batch: int, workers: int, queue: int = 0) -> dict[str, Any]:
    base = short_dir()
    try:
        queue = queue or max(1000, 4 * batch)
        config = write_config(base, workers=workers, queue=queue, level="warning")
        with daemon(base, config) as d, _client(d.socket) as client:
            body = {"jobs": [{"workflow": "noop"}] * batch}
            cpu0, main0 = d.cpu_s(), _cpu_of(d.proc.pid)
            t0 = time.perf_counter()
            last = 0
            for _ in range(n // batch):
                r = client.post("/v1/batch/jobs", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"batch answered {r.status_code}: {r.text[:300]}")
                last = r.json()["items"][-1]["id"]
            posted = time.perf_counter() - t0
            _wait_idle(client, last)
            elapsed = time.perf_counter() - t0
            return {
                "jobs": n,
                "batch": batch,
                "workers": workers,
                "jobs_per_s": round(n / elapsed),
                "posted_per_s": round(n / posted),
                "daemon_cpu_us_per_job": round((d.cpu_s() - cpu0) / n * 1e6, 1),
                "loop_process_cpu_us_per_job": round((_cpu_of(d.proc.pid) - main0) / n * 1e6, 1),
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def huey(n: int) -> dict[str, Any]:
    if n <= 0:  # ``--huey 0``: no peer (huey waits for a first task that never comes)
        return {"skipped": "--huey 0"}
    try:
        from bench.peers import huey_throughput
    except ImportError as exc:  # pragma: no cover - outside bench/.venv
        return {"skipped": str(exc)}
    try:
        return {"tasks": n, "per_s": round(huey_throughput(n))}
    except ImportError as exc:
        return {"skipped": f"huey not installed ({exc}): use bench/run"}


def on_database(config: Path, url: str) -> None:
    """``config`` with ``[daemon] database = url`` (a PostgreSQL store: bench/pglist.py)."""
    text = config.read_text().replace(
        "[daemon]\n", f'[daemon]\ndatabase = "{url}"\nnode = "bench-pglist"\n', 1
    )
    config.write_text(text)


def cancel(n: int, database: str | None = None) -> dict[str, Any]:
    """``database``: a PostgreSQL URL for the daemon's store (else its SQLite file)."""
    base = short_dir()
    try:
        config = write_config(base, workers=1, queue=2 * n + 10, level="warning", extra=HOLD)
        if database is not None:
            on_database(config, database)
        gate = base / "gate"
        with daemon(base, config) as d, _client(d.socket) as client:
            held = client.post("/v1/jobs", json={"workflow": "hold", "params": {"path": str(gate)}})
            held.raise_for_status()
            for start in range(0, n, 5000):
                body = {"jobs": [{"workflow": "noop"}] * min(5000, n - start)}
                client.post("/v1/batch/jobs", json=body).raise_for_status()
            queued = len(client.get("/v1/queue").json()["queued"])
            cpu0 = d.cpu_s()
            t0 = time.perf_counter()
            r = client.post("/v1/batch/cancel", json={"filter": {"state": ["queued"]}})
            took = time.perf_counter() - t0
            r.raise_for_status()
            answer = r.json()
            gate.touch()
            return {
                "queued": queued,
                "canceled": len(answer["done"]),
                "refused": len(answer["refused"]),
                "seconds": round(took, 3),
                "daemon_cpu_s": round(d.cpu_s() - cpu0, 3),
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------ the list

T0 = 1_800_000_000.0
LIST_FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "state (rare: failed)": {"state": "failed"},
    "state (common: completed)": {"state": "completed"},
    "state x3": {"state": ["failed", "timed-out", "canceled"]},
    "workflow (rare)": {"workflow": "archive"},
    "workflow (common)": {"workflow": "ingest"},
    "asset (one of 1,000)": {"asset": "tape-0421"},
    "resource (pool)": {"resource": "encoders"},
    "since (last hour)": {"since": "2027-01-29T07:00:00Z"},
    "until (first day)": {"until": "2027-01-16T08:00:00Z"},
    "since+until (a day in the middle)": {
        "since": "2027-01-22T00:00:00Z",
        "until": "2027-01-23T00:00:00Z",
    },
    "until (a week ago: half the jobs)": {"until": "2027-01-22T08:00:00Z"},
    "since (a week ago: half the jobs)": {"since": "2027-01-22T08:00:00Z"},
    "workflow + until (common + first day)": {
        "workflow": "ingest",
        "until": "2027-01-16T08:00:00Z",
    },
    "state + since+until (common + a day)": {
        "state": "completed",
        "since": "2027-01-22T00:00:00Z",
        "until": "2027-01-23T00:00:00Z",
    },
    "search (rare)": {"search": "promo-77"},
    "search (common)": {"search": "clip"},
    "search (2 chars)": {"search": "-9"},
    "search + state": {"search": "clip", "state": "failed"},
    "workflow + state (common + rare)": {"workflow": "ingest", "state": "failed"},
    "matches nothing": {"workflow": "ingest", "asset": "tape-0421", "state": "invoiced"},
}


def list_job(i: int, n: int) -> Job:
    """The ``i``-th of ``n`` jobs over two weeks (one a second or so): workflows, states,
    names, assets varied (bench/pglist.py loads the same jobs into PostgreSQL)."""
    created = T0 + i * (1_209_600 / n)
    rare = i % 1000 == 0
    spec = JobSpec(
        workflow="archive" if rare else "ingest",
        name=f"clip-{i}" + ("-promo-77" if i % 30_000 == 0 else "") if i % 3 == 0 else None,
        assets=(f"tape-{i % 1000:04d}",),
        pools=("encoders",) if i % 100 == 0 else (),
        start_at=created + 3600 if i % 4 == 0 else None,
    )
    state = JobState.FAILED if i % 997 == 0 else JobState.COMPLETED
    return Job(i, spec, state, created_at=created, updated_at=created)


def _list_rows(n: int) -> Any:
    step_row = step_insert(Step(0, 0, "n", "noop", {}, StepState.COMPLETED))[1]
    for i in range(1, n + 1):
        job = list_job(i, n)
        created = job.created_at
        yield job_insert(job)[1], (i, *step_row[1:]), (i, created, None, "confirmed", "x", "b")


def fill(db: Path, n: int) -> float:
    t0 = time.perf_counter()

    async def create() -> None:
        async with open_store(db, synchronous="off"):
            pass

    anyio.run(create)
    template = Job(0, JobSpec("noop"), JobState.COMPLETED, 0.0, 0.0)
    job_sql = job_insert(template)[0]
    step_sql = step_insert(Step(0, 0, "n", "noop", {}))[0]
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        rows = _list_rows(n)
        while chunk := [next(rows, None) for _ in range(50_000)]:
            chunk = [c for c in chunk if c is not None]
            if not chunk:
                break
            conn.executemany(job_sql, [c[0] for c in chunk])
            conn.executemany(step_sql, [c[1] for c in chunk])
            conn.executemany(HISTORY_INSERT, [c[2] for c in chunk])
        sqlwriter.index_names(conn)  # the names, as the writer indexes them
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


def _p99(samples: list[float]) -> float:
    """The 99th percentile (the one sample when there is only one)."""
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _pages(client: httpx.Client, repeat: int, limit: int = 100) -> dict[str, Any]:
    """Each filter's first page, ``repeat`` times: items, p50, p99 and max in ms."""
    pages: dict[str, Any] = {}
    for name, params in LIST_FILTERS.items():
        samples, count = [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = client.get("/v1/jobs", params={**params, "limit": limit})
            samples.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            count = len(r.json()["items"])
        pages[name] = {
            "items": count,
            "ms_p50": round(statistics.median(samples), 2),
            "ms_p99": round(_p99(samples), 2),
            "ms_max": round(max(samples), 2),
            "load": round(os.getloadavg()[0], 1),
        }
    return pages


def list_pages(n: int, repeat: int, keep_db: Path | None = None) -> dict[str, Any]:
    """The filtered pages over a database of ``n`` jobs; with ``keep_db``, that database is
    reused if it exists (else filled and kept there): the fill takes minutes."""
    base = short_dir()
    try:
        config = write_config(base, level="warning")
        db = base / "state" / "jobd.db"
        if keep_db is not None and keep_db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(keep_db, db)
            filled = None
        else:
            filled = round(fill(db, n), 1)
            if keep_db is not None:
                shutil.copy(db, keep_db)
        out: dict[str, Any] = {"jobs": n, "fill_s": filled, "pages": {}}
        with daemon(base, config) as d, _client(d.socket) as client:
            out["pages"] = _pages(client, repeat)
        out["worst_ms_p50"] = max(p["ms_p50"] for p in out["pages"].values())
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000, help="jobs submitted in batches")
    p.add_argument("--batch", type=int, default=1000)
    # 256: the daemon's `workers` for this benchmark (a config value). Every worker's `running`
    # write waits for a commit, and a batch's insert holds them all for its ~13 ms; with 256
    # they ride ~2.3x more to a commit than with 64, and the daemon spends ~20 % less CPU a
    # job (docs/performance.md, "More workers, fuller commits").
    p.add_argument("--workers", type=int, default=256)
    p.add_argument("--queue", type=int, default=0, help="run_queue_size (default 4 batches)")
    p.add_argument("--huey", type=int, default=3000, help="huey tasks (the peer)")
    p.add_argument("--cancel", type=int, default=10_000, help="queued jobs canceled")
    p.add_argument("--list-jobs", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument(
        "--list-db",
        type=Path,
        help="reuse this filled database for the list if it exists (else fill it there)",
    )
    p.add_argument("--only", default="submit,cancel,list")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    out: dict[str, Any] = {"bench": "batch"}
    if "submit" in only:
        out["submit"] = submit(args.jobs, args.batch, args.workers, args.queue)
        out["huey"] = huey(args.huey)
        if "per_s" in out["huey"]:
            out["submit"]["vs_huey"] = round(out["submit"]["jobs_per_s"] / out["huey"]["per_s"], 1)
    if "cancel" in only:
        out["cancel"] = cancel(args.cancel)
    if "list" in only:
        out["list"] = list_pages(args.list_jobs, args.repeat, args.list_db)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
