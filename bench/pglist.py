"""Filtered list pages on the PostgreSQL store over 1,000,000 jobs: each filter's p50 and p99.

The jobs and the filters are bench/batch.py's list (``list_job``, ``LIST_FILTERS``): two
weeks of jobs, one a second or so. Subcommands, so that a database filled once (minutes)
serves several runs, and code before and after a change can read the same rows:

* ``fill --db NAME [--jobs N] [--schema V]``: a new database NAME at schema V (default:
  this jobd's), the jobs bulk-loaded with COPY in chunks (the schema's triggers fill
  ``job_keys``, and from schema 12 ``job_names``), then ANALYZE. A database at an older
  schema is how the code before a change is measured (it refuses a newer one).
* ``copy --db NAME --to NAME2``: NAME2 made from NAME (``CREATE DATABASE ... TEMPLATE``),
  then opened by this jobd's store, which migrates it: the migration's time over N jobs.
* ``read --db NAME [--repeat R] [--limit L] [--daemon]``: each filter's first page read R
  times through the store's own read (``Store.list_jobs``, in this process, whichever jobd
  is on the path), or with ``--daemon`` through a real daemon on that database
  (``GET /v1/jobs`` with httpx over its Unix socket, as bench/batch.py's list on SQLite):
  p50, p99 and max in ms, with the load average.
* ``plans --db NAME [--repeat R] [--limit L]``: each filter's first page on the server alone:
  the statements the store's read sends, each under ``EXPLAIN (ANALYZE, BUFFERS)``, their
  planning and execution ms and shared buffers summed, best of R (default 5); less noisy
  than ``read`` on a loaded machine (no client, no round trips).
* ``writes --db NAME [--jobs N]``: what the schema costs the hot path: a new database at
  this jobd's schema, N jobs written through the store in group-commit batches (each an
  insert unit, then a transition unit: two non-HOT updates' index entries), and the
  server's CPU per job (its backends' user + system time, from ``/proc``); dropped after.
  Run it alternately with the code before and after a change (``PYTHONPATH``).
* ``cancel --db NAME --jobs N``: bench/batch.py's ``cancel`` on PostgreSQL: a daemon on a
  new database NAME, N queued jobs canceled by ``POST /v1/batch/cancel`` with a filter;
  the request's time; NAME dropped after. Run it with the code before and after a change.
* ``drop --db NAME``.

The server: ``--server`` (a ``postgresql://`` URL of a role that may create databases),
else ``$JOBD_TEST_PG_URL``, else ``postgresql://postgres@localhost:5432/postgres``.
Usage: ``python -m bench.pglist fill --db jobs1m`` then ``python -m bench.pglist read --db jobs1m``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import datetime
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg

from bench.batch import LIST_FILTERS
from jobd.core.states import JobState
from jobd.store import JobFilter
from jobd.store.codec import error_to_json, spec_to_json
from jobd.store.postgres import SCHEMA_VERSION, open_store

LOCAL = "postgresql://postgres@localhost:5432/postgres"
COLUMNS = (
    "id, name, workflow, state, spec, priority, start_at, end_at, due_at, error, schedule,"
    " created_at, updated_at"
)
CHUNK = 50_000


def _url(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _schema(conn: psycopg.Connection[Any], version: int) -> None:
    """The store's schema files up to ``version``, as the store's migration applies them."""
    from jobd.store.postgres.migrate import migrations

    folder = resources.files("jobd.store.postgres").joinpath("sql")
    with conn.transaction():
        conn.execute(folder.joinpath("schema.sql").read_text())  # type: ignore[arg-type]
        for number, sql in migrations().items():
            if number <= version:
                conn.execute(sql)  # type: ignore[arg-type]  # the package's own files
        conn.execute(
            "INSERT INTO jobd_meta (key, value) VALUES ('schema_version', %s)", (str(version),)
        )


def _row(i: int, n: int) -> tuple[Any, ...]:
    from bench.batch import list_job  # here: the code before a change has no list_job

    job = list_job(i, n)
    s = job.spec
    return (
        job.id,
        s.name,
        s.workflow,
        str(job.state),
        spec_to_json(s),
        s.priority,
        s.start_at,
        s.end_at,
        job.due_at,
        error_to_json(job.error),
        s.schedule,
        job.created_at,
        job.updated_at,
    )


def fill(server: str, name: str, n: int, version: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # the caller's name
    with psycopg.connect(_url(server, name), autocommit=True) as conn:
        _schema(conn, version)
        for start in range(1, n + 1, CHUNK):
            sql = f"COPY jobs ({COLUMNS}) FROM STDIN"
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as rows:  # type: ignore[arg-type]
                for i in range(start, min(start + CHUNK, n + 1)):
                    rows.write_row(_row(i, n))
        conn.execute("VACUUM ANALYZE")
    return {"db": name, "jobs": n, "schema": version, "fill_s": round(time.perf_counter() - t0, 1)}


def copy(server: str, name: str, to: str) -> dict[str, Any]:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{to}" TEMPLATE "{name}"')  # type: ignore[arg-type]
    t0 = time.perf_counter()

    async def migrate() -> None:
        async with open_store(_url(server, to), node="bench-pglist") as store:
            await store.analyze()

    anyio.run(migrate)
    return {"db": to, "schema": SCHEMA_VERSION, "migrate_s": round(time.perf_counter() - t0, 1)}


def job_filter(params: dict[str, Any]) -> JobFilter:
    """A filter of ``LIST_FILTERS`` (the API's query parameters) as the store's."""
    states = params.get("state", [])
    when = {
        key: datetime.fromisoformat(params[key]).timestamp()
        for key in ("since", "until")
        if key in params
    }
    return JobFilter(
        states=tuple(JobState(s) for s in ([states] if isinstance(states, str) else states)),
        workflow=params.get("workflow"),
        asset=params.get("asset"),
        resource=params.get("resource"),
        search=params.get("search"),
        **when,
    )


def _p99(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def read(server: str, name: str, repeat: int, limit: int) -> dict[str, Any]:
    async def pages() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with open_store(_url(server, name), node="bench-pglist") as store:
            for label, params in LIST_FILTERS.items():
                f, samples, count = job_filter(params), [], 0
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    count = len(await store.list_jobs(f, limit, None))
                    samples.append((time.perf_counter() - t0) * 1000)
                out[label] = {
                    "items": count,
                    "ms_p50": round(statistics.median(samples), 2),
                    "ms_p99": round(_p99(samples), 2),
                    "ms_max": round(max(samples), 2),
                    "load": round(os.getloadavg()[0], 1),
                }
        return out

    found = anyio.run(pages)
    worst = max(found, key=lambda label: found[label]["ms_p50"])
    return {"db": name, "pages": found, "worst_p50": [worst, found[worst]["ms_p50"]]}


class Recording:
    """A connection that notes every statement sent through it (to EXPLAIN them after; the
    plan tests of tests/test_postgres_filters.py use it too)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.sent: list[tuple[str, Any]] = []

    async def execute(self, sql: str, params: Any = None, **options: Any) -> Any:
        self.sent.append((sql, params))
        return await self.conn.execute(sql, params, **options)  # type: ignore[arg-type]


async def _explained(
    conn: psycopg.AsyncConnection[Any], f: JobFilter, limit: int
) -> tuple[float, int, int]:
    """One page of ``f`` read by the store's own read; then each statement it sent under
    ``EXPLAIN (ANALYZE, BUFFERS)``: the server's ms (planning and execution) and shared
    buffers touched, summed, and the number of statements."""
    from jobd.store.postgres import queries as q
    from jobd.store.postgres.filters import read_filtered

    recording = Recording(conn)
    await read_filtered(cast(Any, recording), f, q.FILTER_JOB_COLUMNS, limit, None)
    ms, buffers = 0.0, 0
    for sql, params in recording.sent:
        explain = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"
        row = await (await conn.execute(explain, params, prepare=False)).fetchone()  # type: ignore[arg-type]
        doc = row[0] if isinstance(row[0], list) else json.loads(row[0])  # type: ignore[index]
        top = doc[0]["Plan"]
        buffers += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
        ms += doc[0]["Execution Time"] + doc[0].get("Planning Time", 0.0)
    return ms, buffers, len(recording.sent)


def plans(server: str, name: str, repeat: int, limit: int) -> dict[str, Any]:
    """Each filter's first page on the server alone (less noisy than ``read`` on a loaded
    machine): best of ``repeat`` of :func:`_explained`."""

    async def pages() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with await psycopg.AsyncConnection.connect(_url(server, name)) as conn:
            await conn.set_autocommit(True)
            for label, params in LIST_FILTERS.items():
                runs = [await _explained(conn, job_filter(params), limit) for _ in range(repeat)]
                ms, buffers, statements = min(runs)
                out[label] = {
                    "server_ms": round(ms, 2),
                    "buffers": buffers,
                    "statements": statements,
                }
        return out

    found = anyio.run(pages)
    worst = max(found, key=lambda label: found[label]["server_ms"])
    return {"db": name, "pages": found, "worst": [worst, found[worst]["server_ms"]]}


def writes(server: str, name: str, n: int) -> dict[str, Any]:
    from bench.pg import backend_cpu
    from jobd.core.models import Job, JobSpec

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # the caller's name
    url = _url(server, name)

    async def run() -> float:
        async with open_store(url, node="bench-pglist") as store:
            cpu0 = backend_cpu(url)
            for start in range(1, n + 1, 500):
                ids = range(start, min(start + 500, n + 1))
                units = []
                for i in ids:
                    job = Job(i, JobSpec("noop"), JobState.CONFIRMED, float(i), float(i))
                    units.append(store.changes().insert_job(job))
                await asyncio.gather(*(store.commit(u) for u in units))
                was, now = JobState.CONFIRMED, JobState.COMPLETED
                moves = [store.changes().transition(i, was, now, 1.0, "b", "b") for i in ids]
                await asyncio.gather(*(store.commit(u) for u in moves))
            return backend_cpu(url) - cpu0

    try:
        cpu = anyio.run(run)
    finally:
        drop(server, name)
    return {
        "jobs": n,
        "schema": SCHEMA_VERSION,
        "server_us_per_job": round(cpu / n * 1e6, 1),
        "load": round(os.getloadavg()[0], 1),
    }


def read_daemon(server: str, name: str, repeat: int, limit: int) -> dict[str, Any]:
    """The pages through the daemon: ``python -m jobd run`` with ``[daemon] database``."""
    import shutil

    from bench.api import daemon, short_dir, write_config
    from bench.batch import _client, _pages, on_database

    base = short_dir()
    try:
        config = write_config(base, level="warning")
        on_database(config, _url(server, name))
        with daemon(base, config) as d, _client(d.socket) as client:
            found = _pages(client, repeat, limit)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    worst = max(found, key=lambda label: found[label]["ms_p50"])
    return {
        "db": name,
        "via": "daemon",
        "pages": found,
        "worst_p50": [worst, found[worst]["ms_p50"]],
    }


def cancel(server: str, name: str, n: int) -> dict[str, Any]:
    """bench/batch.py's cancel (``n`` queued jobs canceled by filter) on a new database NAME
    (its schema made by the daemon's store), dropped after."""
    from bench.batch import cancel as batch_cancel

    drop(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # the caller's name
    try:
        out = batch_cancel(n, database=_url(server, name))
    finally:
        drop(server, name)
    return {"db": name, "schema": SCHEMA_VERSION, **out, "load": round(os.getloadavg()[0], 1)}


def drop(server: str, name: str) -> dict[str, Any]:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    return {"dropped": name}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = ("fill", "copy", "read", "plans", "writes", "cancel", "drop")
    p.add_argument("command", choices=commands)
    p.add_argument("--db", required=True)
    p.add_argument("--to", help="copy: the new database's name")
    p.add_argument("--server", default=os.environ.get("JOBD_TEST_PG_URL") or LOCAL)
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--schema", type=int, default=SCHEMA_VERSION)
    p.add_argument("--repeat", type=int, help="reads a filter (read: 31; plans: best of 5)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--daemon", action="store_true", help="read: through a real daemon")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 5 if args.command == "plans" else 31
    if args.command == "fill":
        out = fill(args.server, args.db, args.jobs, args.schema)
    elif args.command == "copy":
        out = copy(args.server, args.db, args.to)
    elif args.command == "read" and args.daemon:
        out = read_daemon(args.server, args.db, args.repeat, args.limit)
    elif args.command == "read":
        out = read(args.server, args.db, args.repeat, args.limit)
    elif args.command == "plans":
        out = plans(args.server, args.db, args.repeat, args.limit)
    elif args.command == "writes":
        out = writes(args.server, args.db, args.jobs)
    elif args.command == "cancel":
        out = cancel(args.server, args.db, args.jobs)
    else:
        out = drop(args.server, args.db)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
