"""Where the PostgreSQL store's time goes, per job: the server's time inside each of its
functions (``track_functions = all``), its CPU, and the batches (round trips).

Runs ``bench/pg.py``'s jobd engine (one node, in this process) on a fresh database of the
server (``--server``, else ``$JOBD_TEST_PG_URL``, else the local one), whose
``track_functions`` is set to ``all`` for the run; then reads ``pg_stat_user_functions``.
A function's *self* time excludes the functions it calls, its *total* time includes
them; both are wall time inside the server (a backend waiting for a row lock counts).

Prints one JSON line: the run's figures (``bench.pg.jobd_run``'s) and, per function
called, calls per job and self/total µs per job, the largest first. Usage::

    python -m bench.pgprofile [--jobs 2000] [--assets 10] [--step-ms 0]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio
import psycopg

from bench.engine import LOOP_OPTIONS
from bench.pg import fresh_database, jobd_run, load, server_url


def functions(url: str, jobs: int, deadline: float = 30.0) -> list[dict[str, Any]]:
    """``pg_stat_user_functions`` of ``url``'s database, per job, once every other backend
    of it has exited (a backend's statistics are flushed at its exit at the latest)."""
    with psycopg.connect(url, autocommit=True) as conn:
        end = time.monotonic() + deadline
        while time.monotonic() < end and conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone() != (0,):
            time.sleep(0.05)  # polling a condition, with a deadline
        rows = conn.execute(
            "SELECT funcname, calls, self_time, total_time FROM pg_stat_user_functions"
            " ORDER BY self_time DESC"
        ).fetchall()
    return [
        {
            "function": name,
            "calls_per_job": round(calls / jobs, 2),
            "self_us_per_job": round(self_ms * 1000 / jobs, 1),
            "total_us_per_job": round(total_ms * 1000 / jobs, 1),
        }
        for name, calls, self_ms, total_ms in rows
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--assets", type=int, default=10, help="each job locks 1 of these (0: none)")
    p.add_argument("--step-ms", type=float, default=0.0)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--server", help="a postgresql:// URL of a role that may create databases")
    args = p.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    out: dict[str, Any] = {"bench": "pgprofile", "load_start": load()}
    with fresh_database(server_url(args.server), "jobd_bench_profile") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            name = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
            conn.execute(f"ALTER DATABASE \"{name}\" SET track_functions = 'all'")
        run = jobd_run(
            url, args.jobs, workers=args.workers, assets=args.assets, step_s=args.step_ms / 1000
        )
        out["run"] = anyio.run(lambda: run, backend_options=LOOP_OPTIONS)
        out["functions"] = functions(url, args.jobs)
    out["load_end"] = load()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
