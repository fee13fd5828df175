"""jobd on PostgreSQL beside procrastinate and pgqueuer: same server, same run, N no-op jobs.

Every system runs on its own fresh database (created here, dropped after) of one server:
``--server`` (a ``postgresql://`` URL of a role that may create databases), else
``$JOBD_TEST_PG_URL``, else ``postgresql://postgres@localhost:5432/postgres``. Each figure
is jobs/s end to end: from the first submission until the N-th job is done, the jobs
submitted one at a time by concurrent submitters while the workers run.

* **jobd**: the engine in this process on the PostgreSQL store (``[daemon] database``),
  ``--workers`` 64 workers, 512 concurrent ``Engine.submit`` calls, each job durable at
  submission, ``running`` and ``completed`` (``bench/engine.py``'s way, on PostgreSQL).
* the peers: ``bench/pgpeers.py`` (procrastinate 16 concurrent, pgqueuer).

Workloads: no-op jobs, plain and each locking 1 of 10 assets (exclusive); plain again
submitted in batches of 100 (jobd ``Engine.submit_many``, procrastinate
``batch_defer_async``, pgqueuer's list ``enqueue``; 16 concurrent submitters); the same with a
step of ``--step-ms`` (50) ms, where the locked workload's ideal is 10 assets busy all the
time (10 / 0.05 s = 200 jobs/s) and the plain one's is every worker busy. pgqueuer has no
per-key locks: its locked rows say so. procrastinate's locked runs use fewer jobs
(``--locked-peer-jobs`` 500; ``--slow-jobs`` 100 with 50 ms steps): its worker is not
woken when a lock is released (it polls every 5 s, its default), so a locked backlog
drains at a few jobs per second.

Also reports the store's own counters for jobd (batches, units per batch) and the load
average before and after each run (other sessions share this machine's 2 cores).

Prints one JSON line. Usage: ``python -m bench.pg [--jobs 5000] [--only jobd,...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import pgpeers
from bench.engine import LOOP_OPTIONS, PLUGINS, Counter, submit_all

LOCAL = "postgresql://postgres@localhost:5432/postgres"
SYSTEMS = ("jobd", "procrastinate", "pgqueuer")
#: Seconds a whole run may take before it is reported as stuck.
TIMEOUT = 600.0


# ----------------------------------------------------------------------------- databases


def server_url(given: str | None) -> str:
    return given or os.environ.get("JOBD_TEST_PG_URL") or LOCAL


@contextmanager
def fresh_database(server: str, prefix: str) -> Iterator[str]:
    """A new empty database on ``server`` (its URL), dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a name we made
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def backend_cpu(url: str) -> float:
    """CPU seconds (user + system) used so far by the server processes of ``url``'s
    database (its backends, read from ``/proc``: the server runs on this machine)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    total = 0.0
    for (pid,) in rows:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------------- jobd


def pg_config(state: Path, url: str, workers: int, queue: int, step_s: float = 0.05) -> Any:
    from jobd.config import Config, DaemonConfig, Defaults, StepConfig, WorkflowConfig

    flows = {
        "noop": WorkflowConfig(name="noop", steps=(StepConfig(name="n", action="noop"),)),
        "pause": WorkflowConfig(
            name="pause", steps=(StepConfig("p", "pause", {"seconds": step_s}),)
        ),
    }
    daemon = DaemonConfig(
        state_dir=state,
        workers=workers,
        run_queue_size=queue,
        plugin_dirs=(PLUGINS,),
        file_roots=(state,),
        database=url,
    )
    return Config(daemon=daemon, defaults=Defaults(retries=0), workflows=flows)


def specs(n: int, assets: int, step_s: float) -> list[Any]:
    from jobd.core.models import JobSpec

    flow = "pause" if step_s else "noop"
    return [
        JobSpec(workflow=flow, assets=(f"asset-{i % assets}",) if assets else ()) for i in range(n)
    ]


async def jobd_run(
    url: str,
    n: int,
    *,
    workers: int = 64,
    assets: int = 0,
    step_s: float = 0.0,
    inflight: int = 512,
    batch: int = 1,
) -> dict[str, Any]:
    """jobd's engine on the PostgreSQL database ``url``: jobs/s and the store's batches.
    ``batch`` > 1: submitted by ``Engine.submit_many`` of that many jobs (16 concurrent)."""
    import anyio

    from jobd.engine import Engine
    from jobd.plugin.host import PluginHost
    from jobd.store import open_store

    plugins = PluginHost([PLUGINS], builtin=False, entry_points=False)
    plugins.load()
    todo = specs(n, assets, step_s)
    with tempfile.TemporaryDirectory(prefix="jobd-pgbench-") as tmp:
        state = Path(tmp)
        async with open_store(state / "unused.db", database=url) as store:
            config = pg_config(state, url, workers, max(n, 1000), step_s)
            engine = Engine(config, store, plugins)
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                counter = Counter(n)
                engine.add_listener(counter)
                b0, u0, k0 = store.batches, store.units, getattr(store, "bulk_batches", 0)
                cpu0, server0 = time.process_time(), backend_cpu(url)
                t0 = time.perf_counter()
                if batch > 1:
                    await submit_batches(engine, todo, batch)
                else:
                    await submit_all(engine, todo, inflight)
                with anyio.fail_after(TIMEOUT):
                    await counter.finished.wait()
                wall = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                server = backend_cpu(url) - server0
                batches, units = store.batches - b0, store.units - u0
                bulk = getattr(store, "bulk_batches", 0) - k0
                tg.cancel_scope.cancel()
    return {
        "jobs_per_s": round(n / wall),
        "cpu_us_per_job": round(cpu / n * 1e6),
        "server_cpu_us_per_job": round(server / n * 1e6),
        "batches": batches,
        "bulk_batches": bulk,
        "units_per_batch": round(units / max(batches, 1), 1),
        "ms_per_batch": round(wall * 1000 / max(batches, 1), 2),
    }


async def submit_batches(engine: Any, todo: list[Any], batch: int, tasks: int = 16) -> None:
    """``Engine.submit_many`` of ``batch`` jobs at a time, from ``tasks`` concurrent tasks."""
    import anyio

    chunks = [todo[i : i + batch] for i in range(0, len(todo), batch)]

    async def submitter(k: int) -> None:
        for chunk in chunks[k::tasks]:
            await engine.submit_many(chunk, actor="bench")

    async with anyio.create_task_group() as tg:
        for k in range(tasks):
            tg.start_soon(submitter, k)


# ----------------------------------------------------------------------------- the runs


def workloads(args: argparse.Namespace) -> list[dict[str, Any]]:
    step = args.step_ms / 1000
    return [
        {"name": "noop", "jobs": args.jobs, "assets": 0, "step_s": 0.0},
        {"name": "noop_locked", "jobs": args.jobs, "assets": 10, "step_s": 0.0},
        {"name": "noop_batch", "jobs": args.jobs, "assets": 0, "step_s": 0.0, "batch": 100},
        {"name": "step", "jobs": args.step_jobs, "assets": 0, "step_s": step},
        {"name": "step_locked", "jobs": args.step_jobs, "assets": 10, "step_s": step},
    ]


def ideal(system: str, w: dict[str, Any], workers: int) -> float | None:
    """Jobs/s if the bottleneck resource were busy all the time (only for timed steps)."""
    if not w["step_s"]:
        return None
    if w["assets"]:
        return w["assets"] / w["step_s"]
    busy = {"jobd": workers, "procrastinate": pgpeers.CONCURRENCY}.get(system)
    return None if busy is None else busy / w["step_s"]


def run_one(system: str, url: str, w: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    n, assets, step_s, batch = w["jobs"], w["assets"], w["step_s"], w.get("batch", 1)
    if system == "jobd":
        coro: Any = jobd_run(
            url, n, workers=args.workers, assets=assets, step_s=step_s, batch=batch
        )
        import anyio

        return dict(anyio.run(lambda: coro, backend_options=LOOP_OPTIONS))
    if system == "procrastinate":
        if assets:
            n = min(n, args.slow_jobs if step_s else args.locked_peer_jobs)
        run = pgpeers.procrastinate_run(url, n, locks=assets, step_s=step_s, batch=batch)
        return {"jobs": n, "jobs_per_s": round(asyncio.run(run), 1)}
    rate = asyncio.run(pgpeers.pgqueuer_run(url, n, step_s=step_s, batch=batch))
    return {"jobs": n, "jobs_per_s": round(rate, 1)}


def measure(server: str, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for w in workloads(args):
        row: dict[str, Any] = {"jobs": w["jobs"], "assets": w["assets"], "step_s": w["step_s"]}
        for system in args.only:
            if system == "pgqueuer" and w["assets"]:
                row[system] = {"skipped": "pgqueuer has no per-key locks"}
                continue
            before = load()
            with fresh_database(server, f"jobd_bench_{system}") as url:
                try:
                    got = run_one(system, url, w, args)
                except Exception as exc:  # one broken peer must not lose the others
                    got = {"error": f"{type(exc).__name__}: {exc}"}
            got["load"] = [before, load()]
            best = ideal(system, w, args.workers)
            if best and "jobs_per_s" in got:
                got["ideal_per_s"], got["of_ideal"] = best, round(got["jobs_per_s"] / best, 3)
            row[system] = got
            print(f"  {w['name']:<12} {system:<14} {got}", file=sys.stderr, flush=True)
        results[w["name"]] = row
    return results


def server_facts(server: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        facts = {
            key: conn.execute(f"SHOW {key}").fetchone()[0]  # type: ignore[index]
            for key in ("server_version", "synchronous_commit", "fsync", "shared_buffers")
        }
    return facts


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="postgresql:// URL of a role that may create databases")
    p.add_argument("--jobs", type=int, default=5000, help="no-op jobs per run")
    p.add_argument("--step-jobs", type=int, default=1000, help="jobs per run with a step")
    p.add_argument("--slow-jobs", type=int, default=100, help="procrastinate's 50 ms locked run")
    p.add_argument(
        "--locked-peer-jobs", type=int, default=500, help="procrastinate's locked no-op run"
    )
    p.add_argument("--step-ms", type=float, default=50.0)
    p.add_argument("--workers", type=int, default=64, help="jobd's workers")
    p.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=SYSTEMS)
    args = p.parse_args(argv)
    if set(args.only) - set(SYSTEMS):
        p.error(f"--only takes some of {','.join(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    args = parse(argv)
    server = server_url(args.server)
    out = {"bench": "pg", "server": server_facts(server), "load_start": load()}
    out["runs"] = measure(server, args)
    out["load_end"] = load()
    print(json.dumps(out))
    from bench import suite

    print(suite.markdown([suite.Row(**r) for r in rows(out)]), file=sys.stderr)


# ----------------------------------------------------------------------------- the table

LABELS = {
    "noop": ("no-op jobs/s, 1 node", 5000),
    "noop_locked": ("no-op jobs/s, 1 node, each locking 1 of 10 assets", 4000),
    "noop_batch": ("no-op jobs/s, 1 node, submitted in batches of 100", None),
    "step": ("50 ms steps, jobs/s, 1 node", None),
    "step_locked": ("50 ms steps, each locking 1 of 10 assets (ideal 200/s)", None),
}


def _fig(d: dict[str, Any]) -> str:
    if "jobs_per_s" not in d:
        return str(d.get("skipped") or d.get("error") or "n/a")[:60]
    notes = [f"{100 * d['of_ideal']:.0f} % of ideal"] if "of_ideal" in d else []
    notes += [f"load {d['load'][0]}"] if d.get("load") else []
    return f"{d['jobs_per_s']:,.0f}" + (f" ({', '.join(notes)})" if notes else "")


def rows(raw: dict[str, Any]) -> list[dict[str, str]]:
    """The suite's table rows (``bench/suite.py``'s ``Row`` fields) of one run's output."""
    out = []
    for name, (label, target) in LABELS.items():
        run = raw.get("runs", {}).get(name)
        if not run:
            continue
        jobd = run.get("jobd", {})
        rate = jobd.get("jobs_per_s")
        meets = "" if target is None or rate is None else ("yes" if rate >= target else "**no**")
        if name == "step_locked" and "of_ideal" in jobd:
            meets = "yes" if jobd["of_ideal"] >= 0.8 else "**no**"
        for i, peer in enumerate(("procrastinate", "pgqueuer")):
            d = run.get(peer, {})
            peer_rate = d.get("jobs_per_s")
            ratio = f"{rate / peer_rate:.1f}" if rate and peer_rate else ""
            out.append(
                {
                    "figure": f"PostgreSQL: {label}" if i == 0 else "",
                    "jobd": _fig(jobd) if i == 0 else "",
                    "peer": peer,
                    "peer_value": _fig(d),
                    "ratio": ratio,
                    "target": (
                        "≥ 80 % of ideal"
                        if name == "step_locked"
                        else f"≥ {target:,}"
                        if target
                        else ""
                    )
                    if i == 0
                    else "",
                    "meets": meets if i == 0 else "",
                }
            )
    return out


if __name__ == "__main__":
    main()
