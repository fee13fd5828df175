"""One submission's round trip, part by part: what a request pays alone.

Each part is measured one at a time (nothing shares a commit), inside-out, in one run so
that the parts are comparable (the disk's fsync latency swings from minute to minute on a
shared machine):

1. ``disk``: one 4 KiB ``pwrite`` + ``fdatasync`` over a preallocated file (what a WAL
   commit waits for), in the state directory's file system;
2. ``sqlite``: one submission's statements (recorded from part 4) applied and committed by
   :func:`jobd.store.sqlite.sqlwriter.apply_batches` in this process, ``synchronous``
   FULL, then OFF (no fsync: the SQL's own CPU);
3. ``store``: the same units committed through the store (the writer process, its pipe,
   the wake-ups on both sides), one at a time: the writer's CPU and the loop's CPU;
4. ``engine``: ``Engine.submit`` of a stored-only job (due tomorrow), no HTTP;
5. ``asgi``: ``POST /v1/jobs`` through the API app (:class:`HotRoutes`) called over raw
   ASGI, no server: what uvicorn's protocol leaves out.

The daemon with uvicorn and a client is :mod:`bench.api` (``--sequential``). Prints one
JSON line; medians in µs. Usage: ``python -m bench.request [--jobs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from jobd.config import Config, DaemonConfig, Defaults, StepConfig, WorkflowConfig
from jobd.core.models import JobSpec
from jobd.engine import Engine
from jobd.plugin.host import PluginHost
from jobd.service.api import create_app
from jobd.store.sqlite import sqlwriter
from jobd.store.sqlite.store import SCHEMA_VERSION, SqliteStore, open_store
from jobd.store.sqlite.units import Unit

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "jobd" / "store" / "sqlite" / "sql" / "schema.sql"


def _median_us(values: list[float]) -> float:
    return round(statistics.median(values) * 1e6, 1)


def _p90_us(values: list[float]) -> float:
    return round(sorted(values)[int(len(values) * 0.9)] * 1e6, 1)


def disk(folder: Path, n: int) -> dict[str, float]:
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\0" * 4096 * n)
        os.fsync(fd)
        walls = []
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, b"x" * 4096, i * 4096)
            os.fdatasync(fd)
            walls.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return {"wall_us": _median_us(walls), "p90_us": _p90_us(walls)}


def sqlite_alone(folder: Path, units: list[Unit], synchronous: str) -> dict[str, float]:
    db = str(folder / f"replay-{synchronous}.db")
    conn = sqlwriter.connect(db, synchronous)
    sqlwriter.migrate(conn, db, str(SCHEMA), SCHEMA_VERSION)
    walls, cpus = [], []
    for unit in units:
        t0, c0 = time.perf_counter(), time.process_time()
        sqlwriter.apply_batches(
            conn, [[(unit.statements, unit.guarded, unit.appended, unit.ordered)]]
        )
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - t0)
    conn.close()
    return {"wall_us": _median_us(walls), "p90_us": _p90_us(walls), "cpu_us": _mean_us(cpus)}


def _mean_us(values: list[float]) -> float:
    return round(sum(values) / len(values) * 1e6, 1)


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Clock:
    """Wall per call, and the loop's and the writer's CPU over all calls."""

    def __init__(self, writer_pid: int) -> None:
        self.writer_pid = writer_pid
        self.walls: list[float] = []

    async def run(self, n: int, call: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
        w0, c0 = _proc_cpu(self.writer_pid), time.process_time()
        for i in range(n):
            t0 = time.perf_counter()
            await call(i)
            self.walls.append(time.perf_counter() - t0)
        return {
            "wall_us": _median_us(self.walls),
            "p90_us": _p90_us(self.walls),
            "loop_cpu_us": round((time.process_time() - c0) / n * 1e6, 1),
            "writer_cpu_us": round((_proc_cpu(self.writer_pid) - w0) / n * 1e6, 1),
        }


def _config(state: Path) -> Config:
    noop = WorkflowConfig(name="noop", steps=(StepConfig(name="n", action="noop"),))
    daemon = DaemonConfig(
        state_dir=state,
        plugin_dirs=(ROOT / "bench" / "plugins",),
        file_roots=(state,),
        workers=8,
        run_queue_size=1000,
    )
    return Config(daemon=daemon, defaults=Defaults(retries=0), workflows={"noop": noop})


def _tomorrow() -> float:
    return (datetime.now(UTC) + timedelta(days=1)).timestamp()


async def _post(app: Any, body: bytes) -> int:
    """One ``POST /v1/jobs`` over raw ASGI; the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"jobd"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": None,
        "server": None,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def _in_process(state: Path, n: int) -> tuple[dict[str, Any], list[Unit]]:
    config = _config(state)
    plugins = PluginHost(config.daemon.plugin_dirs)
    plugins.load()
    recorded: list[Unit] = []
    out: dict[str, Any] = {}
    async with open_store(config.daemon.db_path, synchronous="full") as store:
        assert isinstance(store, SqliteStore)
        writer = store._writer
        send = writer.send

        def recording(units: list[Unit]) -> None:
            recorded.extend(units)
            send(units)

        writer.send = recording  # type: ignore[method-assign]
        engine = Engine(config, store, plugins)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            start = _tomorrow()

            async def submit(i: int) -> None:
                await engine.submit(JobSpec(workflow="noop", start_at=start))

            out["engine"] = await _Clock(writer.pid).run(n, submit)
            app = create_app(engine, version="bench", started_at=time.time())
            body = json.dumps(
                {"workflow": "noop", "start_at": datetime.fromtimestamp(start, UTC).isoformat()}
            ).encode()

            async def post(i: int) -> None:
                status = await _post(app, body)
                if status != 201:
                    raise RuntimeError(f"POST /v1/jobs answered {status}")

            out["asgi"] = await _Clock(writer.pid).run(n, post)
            tg.cancel_scope.cancel()
    return out, [u for u in recorded if u.statements or u.appended][:n]


async def _store_alone(state: Path, units: list[Unit]) -> dict[str, float]:
    async with open_store(state / "store-alone.db", synchronous="full") as store:
        assert isinstance(store, SqliteStore)

        async def commit(i: int) -> None:
            await store.commit(units[i])

        return await _Clock(store._writer.pid).run(len(units), commit)


def run(n: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="jobd-r-"))
    try:
        state = base / "state"
        state.mkdir()
        backend = {"use_uvloop": True}
        inproc, units = anyio.run(_in_process, state, n, backend_options=backend)
        return {
            "disk": disk(state, n),
            "sqlite_full": sqlite_alone(state, units, "full"),
            "sqlite_off": sqlite_alone(state, units, "off"),
            "store": anyio.run(_store_alone, state, units, backend_options=backend),
            **inproc,
            "statements_per_unit": round(
                sum(len(u.statements) + len(u.appended) for u in units) / len(units), 1
            ),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=500)
    args = p.parse_args(argv)
    figures = run(args.jobs)
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"bench": "request", "jobs": args.jobs, **figures, "load_average": load}))


if __name__ == "__main__":
    main()
