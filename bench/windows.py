"""Live windows are timers, not workers (SPEC §3.7): plain jobs beside 10,000 open windows.

The real daemon (``python -m jobd run``, 8 workers, ``synchronous=FULL``) is started twice
from an empty database. In the second run, N bookings (``start_at`` now, ``end_at`` an hour
ahead, one no-op step) are submitted in one ``POST /v1/batch/jobs``; once all N are in
their live window (``GET /v1/queue``: ``live_windows``), the daemon's RSS is read
(``VmRSS`` of the daemon and its writer process). Then, in both runs, M plain no-op jobs
due at once are submitted at ``rate`` per second, one request at a time, and their due →
``running`` delay is read from the daemon's own history (the ``due`` row → the ``running``
row, one clock): the same figure with no windows and with N windows open.

Prints one JSON line. Usage: ``python -m bench.windows [--windows N] [--jobs M]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.api import Daemon, daemon, short_dir, write_config

WINDOW_S = 3600.0


def _client(sock: Path) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(sock))
    return httpx.Client(transport=transport, base_url="http://jobd", timeout=300)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def open_windows(client: httpx.Client, n: int) -> float:
    """Submit ``n`` bookings live from now for an hour in one batch; wait until every one
    is in its live window. Returns the seconds that took."""
    t0 = time.perf_counter()
    now = time.time()
    body = {
        "jobs": [
            {"workflow": "noop", "start_at": _iso(now), "end_at": _iso(now + WINDOW_S)}
            for _ in range(n)
        ]
    }
    client.post("/v1/batch/jobs", json=body).raise_for_status()
    deadline = time.monotonic() + 300
    while client.get("/v1/queue").json().get("live_windows", 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} live windows not open within 300 s")
        time.sleep(0.1)  # polling a daemon from outside; not a timing
    return time.perf_counter() - t0


def plain_latency(client: httpx.Client, m: int, rate: float) -> dict[str, Any]:
    """Submit ``m`` no-op jobs due at once at ``rate``/s; due → running (ms) from history."""
    ids = []
    start = time.perf_counter()
    for i in range(m):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the submissions, not a timing
        r = client.post("/v1/jobs", json={"workflow": "noop"})
        r.raise_for_status()
        ids.append(r.json()["id"])
    late = []
    deadline = time.monotonic() + 300
    for job_id in ids:
        while True:
            history = client.get(f"/v1/jobs/{job_id}").json()["history"]
            due = [h["at"] for h in history if h["cause"].startswith("due")]
            running = [h["at"] for h in history if h["to"] == "running"]
            if due and running:
                delta = datetime.fromisoformat(running[0]) - datetime.fromisoformat(due[0])
                late.append(delta.total_seconds() * 1000)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not run within 300 s")
            time.sleep(0.05)
    late.sort()
    return {
        "jobs": m,
        "rate": rate,
        "p50_ms": round(statistics.median(late), 3),
        "p99_ms": round(late[max(0, int(len(late) * 0.99) - 1)], 3),
    }


def _rss_mb(d: Daemon) -> float:
    return round(d.status()["VmRSS"] / 1024, 1)


def one_run(windows: int, jobs: int, rate: float) -> dict[str, Any]:
    base = short_dir()
    try:
        config = write_config(base, workers=8, level="warning")
        with daemon(base, config) as d, _client(d.socket) as client:
            out: dict[str, Any] = {"windows": windows, "rss_mb_idle": _rss_mb(d)}
            if windows:
                out["open_s"] = round(open_windows(client, windows), 2)
                out["rss_mb_windows_open"] = _rss_mb(d)
                queue = client.get("/v1/queue").json()
                out["busy_workers"] = queue["busy_workers"]
            out["due_to_running"] = plain_latency(client, jobs, rate)
            if windows:
                out["live_windows_after"] = client.get("/v1/queue").json()["live_windows"]
            out["rss_mb_end"] = _rss_mb(d)
            return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=500)
    p.add_argument("--rate", type=float, default=100.0)
    args = p.parse_args(argv)
    result = {
        "bench": "windows",
        "no_windows": one_run(0, args.jobs, args.rate),
        "with_windows": one_run(args.windows, args.jobs, args.rate),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
