"""The benchmarks still run: each jobd benchmark function with a tiny N.

No timing is asserted (a loaded CI machine is slow, and that is not a bug): only that
each benchmark ran and produced positive numbers. The peers (huey, SQLAlchemy) live in
``bench/.venv``, not in the project's environment: their test skips without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import api, batch, handoff, request, scale, suite, windows, workers
from bench import bookings as bench_bookings
from bench import engine as bench_engine
from bench import locks as bench_locks


def positive(value: Any) -> bool:
    """Every number in ``value`` (nested dicts and lists too) is > 0."""
    if isinstance(value, dict):
        return all(positive(v) for v in value.values())
    if isinstance(value, list):
        return all(positive(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return value > 0


async def test_engine_throughput_and_latency() -> None:
    assert await bench_engine.throughput(40, 2, 8, 0) > 0
    assert await bench_engine.throughput(40, 2, 8, 3) > 0
    lat = await bench_engine.latency(20, 1000.0, 2)
    assert lat["p50"] > 0 and lat["p99"] > 0


def test_workers_sweep_and_breakdown() -> None:
    result = workers.sweep(40, [1, 2], [2], repeat=1)
    assert [e["workers"] for e in result["plain"]] == [1, 2]
    assert result["locked"][0]["assets"] == 10
    for entry in (*result["plain"], *result["locked"]):
        assert entry["jobs_per_s"] > 0 and positive(entry["samples"])
    report = workers.breakdown(40, 2)
    assert report["commits_per_job"] > 0 and report["loop_cpu_us_per_job"] > 0


async def test_handoff_and_timer_latency() -> None:
    result = await handoff.handoff(12, workers=2)
    assert result["to_running_ms"]["n"] == 11
    assert positive(result)
    timer = await handoff.timer_latency(20, rate=1000.0, workers=2, lead=0.3)
    assert timer["due_to_running_ms"]["n"] == 20
    assert positive(timer["due_to_running_ms"])


def test_timer_tail_stamps_the_alarm() -> None:
    """In a process of its own: it wraps the alarm's ring for the whole process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.timertail", "--jobs", "60", "--gap", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["jobs"] == 60 and result["p50_ms"] > 0
    # A slow loop takes many due jobs a ring, so how many rings there are varies.
    assert result["rings"] >= 1
    assert len(result["stalls"]) == result["rings"] - 1, "with --gap 0 every pair is listed"
    assert all(s["gap_ms"] >= 0 and s["run_delay_ms"] >= 0 for s in result["stalls"])


def test_live_windows_beside_plain_jobs() -> None:
    result = windows.one_run(30, 5, rate=200.0)
    assert result["busy_workers"] == 0 and result["live_windows_after"] == 30
    assert positive(result["due_to_running"]) and result["rss_mb_windows_open"] > 0


def test_api_against_the_real_daemon() -> None:
    result = api.run(12, concurrency=3, workers=2)
    for phase in ("sequential", "concurrent", "raw"):
        for kind in ("stored", "run"):
            assert result[f"{phase}_{kind}"]["per_s"] > 0
    assert result["ready_s"] > 0
    sequential = api.run_sequential(6, 1)
    assert sequential["httpx_0"]["per_s"] > 0 and sequential["raw_0"]["writer_cpu_us"] >= 0


def test_one_submission_part_by_part() -> None:
    result = request.run(8)
    for part in ("disk", "sqlite_full", "sqlite_off", "store", "engine", "asgi"):
        assert result[part]["wall_us"] > 0, part
    assert result["statements_per_unit"] >= 3  # the job, its step, its history row


def test_batch_routes_and_filtered_lists_against_the_real_daemon() -> None:
    submitted = batch.submit(100, 50, workers=4)  # a smoke test: the sizes do not matter
    assert submitted["jobs_per_s"] > 0 and submitted["daemon_cpu_us_per_job"] > 0
    canceled = batch.cancel(50)
    assert canceled["queued"] == canceled["canceled"] == 50 and canceled["refused"] == 0
    pages = batch.list_pages(3000, repeat=2)  # a p99 needs two samples
    assert set(pages["pages"]) == set(batch.LIST_FILTERS)
    assert pages["pages"]["none"]["items"] == 100 and pages["worst_ms_p50"] > 0


def test_scale_populates_and_starts_the_daemon(tmp_path: Path) -> None:
    result = scale.run(300, keep_db=tmp_path / "kept.db")
    assert result["jobs"] == 300 and (tmp_path / "kept.db").exists()
    for start in ("start", "restart"):
        assert positive(result[start]) and result[start]["rss_mb"] > 0
    assert result["restart"]["due_to_running"]["jobs"] == 20


def test_scale_booked_database_has_a_reservation_per_job(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    db = tmp_path / "jobd.db"
    assert scale.populate(db, 50, booked=True) > 0
    with closing(sqlite3.connect(db)) as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("jobs", "steps", "history", "reservations")
        ]
    assert counts == [50, 50, 50, 50]


def test_bookings_and_locks_micro_benchmarks() -> None:
    import random

    rng = random.Random(1)
    index, rows = bench_bookings.build(500, rng)
    index.load(rows)
    checks = bench_bookings.time_checks(index, rng, 50)
    plans, _ = bench_bookings.time_plans(index, rng, 50)
    assert positive(bench_bookings.percentiles(checks))
    assert positive(bench_bookings.percentiles(plans))
    assert bench_locks.uncontended(100) > 0
    assert positive(list(bench_locks.handoff(100, depth=3)))


def test_suite_table_from_results() -> None:
    disk = suite.fsync_probe(5)
    assert disk["fsync_ms_p50"] > 0
    runs = [{"a": 1, "b": {"c": 2.0}, "s": "x"}, {"a": 3, "b": {"c": 4.0}, "s": "x"}]
    assert suite.median_runs(runs) == {"a": 2, "b": {"c": 3.0}, "s": "x", "repeats": 2}
    raw = {
        "workers": {"plain": [{"workers": 8, "jobs_per_s": 100}], "locked": []},
        "peers": {"skipped": "not installed"},
        "disk": disk,
    }
    text = suite.markdown(suite.table(raw))
    assert "| 1. durable no-op jobs/s, 8 workers | 100 |" in text


def test_peers_when_installed() -> None:
    pytest.importorskip("huey")
    pytest.importorskip("sqlalchemy")
    from bench import peers

    assert peers.huey_throughput(20, workers=2) > 0
    assert peers.aps_throughput(20, "memory") > 0
    assert peers.aps_throughput(10, "sqlalchemy") > 0
    assert positive(peers.aps_latency(20, rate=1000.0, lead=0.3))


def test_the_web_monitor_benchmark_in_chromium() -> None:
    from bench import web as bench_web

    result = bench_web.measure(jobs=300, bookings=200, rate=300, seconds=1.0, runs=1)
    assert result["jobs_page"]["rows"] == 50
    assert result["timeline"]["bookings_in_view"] == 200
    assert result["timeline"]["bars_drawn_after_scrolling"] == 200
    assert result["events"]["events_per_s_received"] > 0


def test_cli_startup() -> None:
    from bench import cli as bench_cli

    result = bench_cli.run(1)
    assert set(result) == {"python -c pass", "jobd list", "jobd show 1", "jobd --help"}
    assert all(figures["wall_ms_median"] > 0 for figures in result.values())


def test_loop_instructions_per_job_under_callgrind(tmp_path: Path, capsys: Any) -> None:
    from bench import loopcost

    loopcost.one_run(20, 2, 3)  # what valgrind runs, natively
    assert positive(json.loads(capsys.readouterr().out.splitlines()[-1]))
    out = tmp_path / "cg"
    # A real callgrind file (a bare interpreter: seconds, not the minutes of a jobd run).
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
    subprocess.run(
        [*argv, f"--callgrind-out-file={out}", sys.executable, "-S", "-c", "pass"],
        check=True,
        capture_output=True,
    )
    assert loopcost.read_total(out.with_name("cg-01")) > 0
