"""API submissions/s over the Unix socket, against the real daemon (``python -m jobd run``).

The daemon is started as systemd would start it (``NOTIFY_SOCKET``; the benchmark waits
for ``READY=1``, no sleeps), with a no-op workflow from ``bench/plugins``. One client
posts N jobs with httpx over the Unix socket, first one request at a time, then with
16 requests in flight (``httpx.AsyncClient``). Jobs are due at once (they run while
the client submits, as in production) or, with ``start_at`` a day ahead, only stored.
A third client, a minimal hand-written HTTP/1.1 one (``raw``), shows what the daemon
takes when the client costs next to nothing: on 2 cores, httpx's own CPU is a large
share of the figure. Each phase also reports the CPU µs per request on each side.

Prints one JSON line. Usage: ``python -m bench.api [--jobs N] [--concurrency C]``;
``--sequential ROUNDS``: only the one-at-a-time phases (stored jobs), httpx and the minimal
client in turn, with the daemon's CPU split into its loop's and its writer's. ``--reads
ROUNDS``: N jobs stored, then with httpx one at a time ``GET /v1/jobs/{id}`` of each and
``GET /v1/jobs`` (a page of 100) N/10 times, ROUNDS times in turn.
Also home of :func:`daemon`, the launcher ``bench/scale.py`` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "bench" / "plugins"
START_TIMEOUT = 180.0

CONFIG = """\
[daemon]
state_dir = "{state}"
plugin_dirs = ["{plugins}"]
file_roots = ["{state}"]
workers = {workers}
run_queue_size = {queue}
synchronous = "full"

[api]
socket = "{socket}"
socket_mode = "0600"

[logging]
format = "json"
level = "{level}"

[defaults]
retries = 0

[workflows.noop]
steps = [ {{ name = "n", action = "noop" }} ]
"""


def short_dir() -> Path:
    """A fresh directory whose path is short enough for a Unix socket inside it."""
    return Path(tempfile.mkdtemp(prefix="jobd-b-"))


def write_config(
    base: Path, *, workers: int = 8, queue: int = 1000, level: str = "info", extra: str = ""
) -> Path:
    path = base / "jobd.toml"
    path.write_text(
        CONFIG.format(
            state=base / "state",
            plugins=PLUGINS,
            workers=workers,
            queue=queue,
            socket=base / "jobd.sock",
            level=level,
        )
        + extra
    )
    return path


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket: Path
    ready_s: float  # from spawn to READY=1

    def pids(self) -> list[int]:
        """The daemon and its child processes (its database writer, steps running)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [self.proc.pid, *(int(p) for p in children.read_text().split())]

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) in kB, from /proc: the daemon's plus its children's (the
        writer process), so the figure is the whole footprint (peaks summed: an upper bound)."""
        out = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in out:
                    out[key] += int(value.split()[0])
        return out

    def cpu_s(self) -> float:
        """User + system CPU seconds the daemon and its writer process used so far."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds so far of the daemon's own process (the event loop) and of its child
        processes (the database writer; steps' processes, none for no-op jobs)."""
        loop, children = 0.0, 0.0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if pid == self.proc.pid:
                loop += cpu
            else:
                children += cpu
        return loop, children


def _env(notify: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBD_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["NOTIFY_SOCKET"] = str(notify)
    return env


def _wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"no READY=1 from jobd within {timeout} s")
        sock.settimeout(min(remaining, 0.5))
        try:
            data = sock.recv(65536).decode()
        except TimeoutError:
            if proc.poll() is not None:
                raise RuntimeError(f"jobd exited ({proc.returncode}) before READY=1") from None
            continue
        if "READY=1" in data.splitlines():
            return


@contextmanager
def daemon(base: Path, config: Path, *, python: str = sys.executable) -> Iterator[Daemon]:
    """``python -m jobd run --config CONFIG``; yields once READY=1 came; SIGTERM at the end."""
    notify_path = base / "notify.sock"
    notify_path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        with (base / "daemon.log").open("ab") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [python, "-m", "jobd", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(notify_path),
                cwd=ROOT,
            )
        try:
            try:
                _wait_ready(notify, proc, START_TIMEOUT)
            except RuntimeError as exc:
                log = (base / "daemon.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}\n--- jobd output (tail) ---\n{log}") from None
            yield Daemon(proc, base / "jobd.sock", time.perf_counter() - t0)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            notify_path.unlink(missing_ok=True)


def _body(future: bool) -> dict[str, Any]:
    if not future:
        return {"workflow": "noop"}
    start = datetime.now(UTC) + timedelta(days=1)
    return {"workflow": "noop", "start_at": start.isoformat()}


def sequential(sock: Path, n: int, future: bool) -> float:
    """Jobs/s, one request at a time over one keep-alive connection."""
    body = _body(future)
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://jobd", timeout=60) as client:
        client.get("/v1/health").raise_for_status()
        t0 = time.perf_counter()
        for _ in range(n):
            r = client.post("/v1/jobs", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"submit answered {r.status_code}: {r.text[:200]}")
        return n / (time.perf_counter() - t0)


async def _concurrent(sock: Path, n: int, concurrency: int, future: bool) -> float:
    body = _body(future)
    transport = httpx.AsyncHTTPTransport(uds=str(sock))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://jobd", timeout=60, limits=limits
    ) as client:
        (await client.get("/v1/health")).raise_for_status()

        async def poster(count: int) -> None:
            for _ in range(count):
                r = await client.post("/v1/jobs", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"submit answered {r.status_code}: {r.text[:200]}")

        shares = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]
        t0 = time.perf_counter()
        await asyncio.gather(*(poster(k) for k in shares))
        return n / (time.perf_counter() - t0)


def concurrent(sock: Path, n: int, concurrency: int, future: bool) -> float:
    return asyncio.run(_concurrent(sock, n, concurrency, future))


async def _raw(sock: Path, n: int, concurrency: int, future: bool) -> float:
    """The same POSTs from a minimal hand-written HTTP/1.1 client (asyncio streams, keep-alive):
    what the daemon can take when the client costs next to nothing."""
    payload = json.dumps(_body(future)).encode()
    request = (
        b"POST /v1/jobs HTTP/1.1\r\nhost: jobd\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(payload)
    ) + payload

    async def poster(count: int) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 201"):
                    raise RuntimeError(f"submit answered {head[:40]!r}")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
        finally:
            writer.close()

    shares = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]
    t0 = time.perf_counter()
    await asyncio.gather(*(poster(k) for k in shares))
    return n / (time.perf_counter() - t0)


def raw(sock: Path, n: int, concurrency: int, future: bool) -> float:
    return asyncio.run(_raw(sock, n, concurrency, future))


def measure(d: Daemon, fn: Any, *args: Any) -> dict[str, float]:
    """Run one client phase; report jobs/s and the CPU each side spent per request (the
    daemon's: its loop process and its writer process together, then each)."""
    n = args[1] if isinstance(args[1], int) else len(args[1])
    (loop0, writer0), client0 = d.cpu_split(), time.process_time()
    rate = fn(*args)
    loop1, writer1 = d.cpu_split()
    return {
        "per_s": round(rate),
        "daemon_cpu_us": round((loop1 + writer1 - loop0 - writer0) / n * 1e6),
        "loop_cpu_us": round((loop1 - loop0) / n * 1e6),
        "writer_cpu_us": round((writer1 - writer0) / n * 1e6),
        "client_cpu_us": round((time.process_time() - client0) / n * 1e6),
    }


def run_sequential(n: int, rounds: int) -> dict[str, Any]:
    """Only the one-at-a-time phases, stored jobs: httpx, then the minimal client with one
    request in flight, ``rounds`` times in turn (the load moves between phases)."""
    base = short_dir()
    try:
        config = write_config(base, queue=max(1000, 2 * n))
        with daemon(base, config) as d:
            out: dict[str, Any] = {"jobs": n, "ready_s": round(d.ready_s, 3)}
            for i in range(rounds):
                out[f"httpx_{i}"] = measure(d, sequential, d.socket, n, True)
                out[f"raw_{i}"] = measure(d, raw, d.socket, n, 1, True)
            return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _gets(sock: Path, paths: list[str]) -> float:
    """Requests/s of ``GET`` on each path in turn, one at a time, over one connection."""
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://jobd", timeout=60) as client:
        t0 = time.perf_counter()
        for path in paths:
            r = client.get(path)
            if r.status_code != 200:
                raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:200]}")
        return len(paths) / (time.perf_counter() - t0)


def run_reads(n: int, rounds: int) -> dict[str, Any]:
    """``GET /v1/jobs/{id}`` and ``GET /v1/jobs`` one at a time over ``n`` stored jobs."""
    base = short_dir()
    try:
        config = write_config(base, queue=max(1000, 2 * n))
        with daemon(base, config) as d:
            raw(d.socket, n, 1, True)
            out: dict[str, Any] = {"jobs": n, "ready_s": round(d.ready_s, 3)}
            show = [f"/v1/jobs/{i}" for i in range(1, n + 1)]
            pages = ["/v1/jobs?limit=100"] * max(1, n // 10)
            for i in range(rounds):
                out[f"show_{i}"] = measure(d, _gets, d.socket, show)
                out[f"list_{i}"] = measure(d, _gets, d.socket, pages)
            return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(n: int, concurrency: int, workers: int = 8) -> dict[str, Any]:
    base = short_dir()
    try:
        config = write_config(base, workers=workers, queue=max(1000, 2 * n))
        with daemon(base, config) as d:
            out: dict[str, Any] = {
                "jobs": n,
                "concurrency": concurrency,
                "ready_s": round(d.ready_s, 3),
            }
            for future in (True, False):
                kind = "stored" if future else "run"
                out[f"sequential_{kind}"] = measure(d, sequential, d.socket, n, future)
                out[f"concurrent_{kind}"] = measure(d, concurrent, d.socket, n, concurrency, future)
                out[f"raw_{kind}"] = measure(d, raw, d.socket, n, concurrency, future)
            return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument(
        "--sequential",
        type=int,
        metavar="ROUNDS",
        help="only one request at a time (httpx, then the minimal client), ROUNDS times",
    )
    p.add_argument(
        "--reads",
        type=int,
        metavar="ROUNDS",
        help="GET /v1/jobs/{id} and GET /v1/jobs one at a time (httpx), ROUNDS times",
    )
    args = p.parse_args(argv)
    if args.reads:
        figures = run_reads(args.jobs, args.reads)
    elif args.sequential:
        figures = run_sequential(args.jobs, args.sequential)
    else:
        figures = run(args.jobs, args.concurrency, args.workers)
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"bench": "api", **figures, "load_average": load}))


if __name__ == "__main__":
    main()
