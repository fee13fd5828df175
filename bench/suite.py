"""The benchmark suite: jobd and its peers side by side, on this machine, in one run.

Runs every benchmark in its own process (``python -m bench.<name>``, each prints one
JSON line), repeats the noisy ones and keeps medians, then prints a Markdown table and
writes everything (table rows, raw outputs, machine) to ``bench/results/latest.json``.
Peers need ``huey`` and ``sqlalchemy``: use ``bench/run``, which makes ``bench/.venv``;
without them the peer rows say "skipped".

Usage: ``bench/run [--quick]`` or ``python -m bench.suite [--quick] [--only NAME,...]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHES = (
    "workers",
    "latency",
    "peers",
    "api",
    "batch",
    "scale",
    "bookings",
    "windows",
    "breakdown",
    "disk",
)
#: Not in the default run: ``--only scale-booked`` or ``--booked`` (about a minute more);
#: ``--only pg`` (jobd, procrastinate and pgqueuer on PostgreSQL, ~5 min) and ``--only
#: pgcluster`` (real nodes: 1 and 3, takeover), which need a PostgreSQL server.
EXTRA = ("scale-booked", "pg", "pgcluster")

#: Arguments per benchmark: (default, --quick).
ARGS: dict[str, tuple[list[str], list[str]]] = {
    "workers": (["--jobs", "10000", "--repeat", "3"], ["--jobs", "3000", "--repeat", "1"]),
    "latency": (
        ["--jobs", "500", "--timer-jobs", "3000", "--due-now-jobs", "3000"],
        ["--jobs", "200", "--timer-jobs", "1000", "--due-now-jobs", "1000"],
    ),
    "peers": (
        ["--huey", "3000", "--aps", "10000", "--aps-sql", "500", "--repeat", "3"],
        [
            "--huey",
            "1000",
            "--aps",
            "3000",
            "--aps-sql",
            "300",
            "--repeat",
            "1",
            "--latency-jobs",
            "1000",
        ],
    ),
    "api": (["--jobs", "1000"], ["--jobs", "500"]),
    "batch": (
        [],
        ["--jobs", "20000", "--huey", "1000", "--cancel", "5000", "--list-jobs", "100000"],
    ),
    "scale": (["--jobs", "1000000"], ["--jobs", "100000"]),
    "pg": (
        [],
        ["--jobs", "1000", "--step-jobs", "200", "--slow-jobs", "30", "--locked-peer-jobs", "100"],
    ),
    "pgcluster": ([], ["--jobs", "1000", "--step-jobs", "200"]),
    "scale-booked": (
        ["--jobs", "1000000", "--booked", "--no-empty"],
        ["--jobs", "100000", "--booked", "--no-empty"],
    ),
    "bookings": (["--reservations", "100000"], ["--reservations", "100000", "--calls", "1000"]),
    "windows": (["--windows", "10000", "--jobs", "500"], ["--windows", "10000", "--jobs", "200"]),
    "breakdown": (
        ["--breakdown", "--jobs", "10000", "--workers", "1,8,64"],
        ["--breakdown", "--jobs", "3000", "--workers", "8,64"],
    ),
}
MODULE = {
    "workers": "bench.workers",
    "latency": "bench.handoff",
    "peers": "bench.peers",
    "api": "bench.api",
    "batch": "bench.batch",
    "scale": "bench.scale",
    "scale-booked": "bench.scale",
    "breakdown": "bench.workers",
    "windows": "bench.windows",
    "pg": "bench.pg",
    "pgcluster": "bench.pgcluster",
}
#: Repeated in separate processes; the suite keeps the medians (the others repeat inside).
REPEAT = {"latency": (3, 1), "api": (3, 1)}

TARGETS = {
    "durable": 10_000,
    "locked": 8_000,
    "p99_ms": 2.0,
    "handoff_ms": 0.2,
    "api": 2_000,
    "batch_jobs": 10_000,
    "batch_vs_huey": 4.0,
    "cancel_s": 1.0,
    "page_ms": 20.0,
    "rss_mb": 200,
    "ready_s": 10.0,
    "check_us": 1000.0,
}


@dataclass
class Row:
    figure: str
    jobd: str
    peer: str = ""
    peer_value: str = ""
    ratio: str = ""
    target: str = ""
    meets: str = ""


# ------------------------------------------------------------------------ running


def run_bench(name: str, quick: bool) -> dict[str, Any]:
    args = ARGS[name][1 if quick else 0]
    if name == "bookings":
        cmd = [sys.executable, str(ROOT / "bench" / "bookings.py"), *args]
    else:
        cmd = [sys.executable, "-m", MODULE[name], *args]
    done = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {done.returncode}:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fsync_probe(count: int = 300) -> dict[str, Any]:
    """Latency of write(4 KiB) + fsync on the disk the benchmarks use (tempdir)."""
    samples = []
    with tempfile.NamedTemporaryFile(prefix="jobd-fsync-") as f:
        block = os.urandom(4096)
        for _ in range(count):
            t0 = time.perf_counter()
            os.write(f.fileno(), block)
            os.fsync(f.fileno())
            samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "bench": "disk",
        "count": count,
        "fsync_ms_p50": round(statistics.median(samples), 3),
        "fsync_ms_p99": round(samples[int(count * 0.99) - 1], 3),
        "fsync_ms_max": round(samples[-1], 3),
    }


def median_runs(runs: list[dict[str, Any]], top: bool = True) -> dict[str, Any]:
    """Element-wise median of numeric leaves over runs of the same shape."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [r.get(key) for r in runs]
        if isinstance(value, dict):
            out[key] = median_runs([v for v in values if isinstance(v, dict)], top=False)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            same = [v for v in values if isinstance(v, list) and len(v) == len(value)]
            out[key] = [median_runs(list(items), top=False) for items in zip(*same, strict=True)]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            nums = [v for v in values if isinstance(v, int | float)]
            out[key] = round(statistics.median(nums), 3)
        else:
            out[key] = value
    if top and len(runs) > 1:
        out["repeats"] = len(runs)
    return out


def collect(names: list[str], quick: bool, log: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    have_peers = all(importlib.util.find_spec(m) for m in ("huey", "sqlalchemy"))
    for name in names:
        t0 = time.perf_counter()
        try:
            if name == "disk":
                raw[name] = fsync_probe()
            elif name == "peers" and not have_peers:
                raw[name] = {"skipped": "huey/sqlalchemy not installed: use bench/run"}
            else:
                repeat = REPEAT.get(name, (1, 1))[1 if quick else 0]
                raw[name] = median_runs([run_bench(name, quick) for _ in range(repeat)])
        except Exception as exc:  # one broken benchmark must not lose the others
            raw[name] = {"error": str(exc)}
        log(f"  {name}: {time.perf_counter() - t0:.1f} s")
    return raw


# ------------------------------------------------------------------------ the table


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    try:
        return f"{a / b:.2f}"
    except (TypeError, ZeroDivisionError):
        return ""


def _meets(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def _by_workers(raw: dict[str, Any], kind: str, workers: int) -> Any:
    for entry in raw.get("workers", {}).get(kind, []):
        if entry.get("workers") == workers:
            return entry.get("jobs_per_s")
    return None


def throughput_rows(raw: dict[str, Any]) -> list[Row]:
    peers = raw.get("peers", {})
    skipped = peers.get("skipped") or peers.get("error")
    huey = peers.get("huey_sqlite_4_threads", {}).get("per_s")
    aps_sql = peers.get("apscheduler_sqlalchemy_sqlite", {}).get("per_s")
    aps_mem = peers.get("apscheduler_memory", {}).get("per_s")
    rows = []
    for w in (64, 8):
        jobd = _by_workers(raw, "plain", w)
        ok = None if jobd is None else jobd >= TARGETS["durable"]
        rows.append(
            Row(
                f"1. durable no-op jobs/s, {w} workers",
                _n(jobd),
                target="≥ 10,000",
                meets=_meets(ok),
            )
        )
        if skipped:
            rows.append(Row("", "", "peers", f"skipped: {skipped}"[:80]))
            continue
        rows += [
            Row("", "", "huey SqliteHuey, 4 threads", _n(huey), _ratio(jobd, huey)),
            Row(
                "",
                "",
                "APScheduler 3 SQLAlchemyJobStore (SQLite)",
                _n(aps_sql),
                _ratio(jobd, aps_sql),
            ),
            Row(
                "",
                "",
                "APScheduler 3 MemoryJobStore (not durable)",
                _n(aps_mem),
                _ratio(jobd, aps_mem),
            ),
        ]
    for w in (64, 8):
        jobd = _by_workers(raw, "locked", w)
        ok = None if jobd is None else jobd >= TARGETS["locked"]
        rows.append(
            Row(
                f"2. with locks (1 of 10 assets), {w} workers",
                _n(jobd),
                "peers",
                "no per-asset locks",
                target="≥ 8,000",
                meets=_meets(ok),
            )
        )
    return rows


def latency_rows(raw: dict[str, Any]) -> list[Row]:
    lat = raw.get("latency", {})
    aps = raw.get("peers", {}).get("apscheduler_memory_latency_ms", {})
    now = lat.get("due_now", {}).get("due_to_running_ms", {})
    timer = lat.get("timer", {}).get("due_to_running_ms", {})
    hand = lat.get("handoff", {})
    rows = []
    for label, d in (
        ("3. due → running at 1,000/s, submitted due now, p50 / p99 ms", now),
        ("3. due → running at 1,000/s, from start_at (timer), p50 / p99 ms", timer),
    ):
        p99 = d.get("p99")
        ok = None if p99 is None else p99 <= TARGETS["p99_ms"]
        rows.append(
            Row(label, f"{_n(d.get('p50'), 2)} / {_n(p99, 2)}", target="p99 ≤ 2", meets=_meets(ok))
        )
    if aps:
        rows.append(
            Row(
                "",
                "",
                "APScheduler 3 memory store, scheduled → run",
                f"{_n(aps.get('p50'), 2)} / {_n(aps.get('p99'), 2)}",
                _ratio(timer.get("p99"), aps.get("p99")),
            )
        )
    run = hand.get("to_running_ms", {})
    grant = hand.get("to_grant_ms", {})
    ok = None if run.get("p50") is None else run["p50"] <= TARGETS["handoff_ms"]
    rows.append(
        Row(
            "4. lock hand-off → next job running (durable), p50 / p99 ms",
            f"{_n(run.get('p50'), 3)} / {_n(run.get('p99'), 3)}",
            "peers",
            "no per-asset locks",
            target="p50 ≤ 0.2",
            meets=_meets(ok),
        )
    )
    rows.append(
        Row(
            "4. lock hand-off → lock granted (in memory), p50 / p99 ms",
            f"{_n(grant.get('p50'), 3)} / {_n(grant.get('p99'), 3)}",
        )
    )
    return rows


def api_rows(raw: dict[str, Any]) -> list[Row]:
    api = raw.get("api", {})
    rows = []
    labels = (
        ("sequential", "one request at a time, httpx"),
        ("concurrent", "16 in flight, httpx.AsyncClient"),
        ("raw", "16 in flight, minimal client"),
    )
    for kind, what in (("stored", "jobs stored (due tomorrow)"), ("run", "jobs due now")):
        for key, label in labels:
            d = api.get(f"{key}_{kind}", {})
            value = d.get("per_s")
            ok = None if value is None or key == "raw" else value >= TARGETS["api"]
            cpu = (
                (
                    f" (daemon {d.get('daemon_cpu_us')} µs, client {d.get('client_cpu_us')} µs "
                    "CPU/req)"
                )
                if d
                else ""
            )
            rows.append(
                Row(
                    f"5. API submissions/s, {what}, {label}",
                    _n(value) + cpu,
                    target="≥ 2,000" if key != "raw" else "",
                    meets=_meets(ok),
                )
            )
    return rows


def batch_rows(raw: dict[str, Any]) -> list[Row]:
    b = raw.get("batch", {})
    sub, huey, cancel, pages = (b.get(k, {}) for k in ("submit", "huey", "cancel", "list"))
    rows = []
    if sub:
        rate, ratio = sub.get("jobs_per_s"), sub.get("vs_huey")
        ok = None if rate is None else rate >= TARGETS["batch_jobs"]
        rows.append(
            Row(
                f"9. batch submission, {_n(sub.get('jobs'))} no-op jobs in batches of "
                f"{_n(sub.get('batch'))}, {sub.get('workers')} workers, until completed, jobs/s"
                " (daemon CPU µs/job)",
                f"{_n(rate)} ({sub.get('daemon_cpu_us_per_job')})",
                "huey in-process enqueue + run",
                _n(huey.get("per_s")) if "per_s" in huey else huey.get("skipped", ""),
                "" if ratio is None else f"{ratio}",
                "≥ 10,000; ≥ 4× huey",
                _meets(None if ok is None else ok and (ratio or 0) >= TARGETS["batch_vs_huey"]),
            )
        )
    if cancel:
        took = cancel.get("seconds")
        rows.append(
            Row(
                f"9. batch cancel of {_n(cancel.get('queued'))} queued jobs by filter, s",
                _n(took, 3),
                target="≤ 1",
                meets=_meets(None if took is None else took <= TARGETS["cancel_s"]),
            )
        )
    if pages:
        worst = pages.get("worst_ms_p50")
        rows.append(
            Row(
                f"9. filtered list page over {_n(pages.get('jobs'))} jobs, worst filter p50 ms",
                _n(worst, 1),
                target="≤ 20",
                meets=_meets(None if worst is None else worst <= TARGETS["page_ms"]),
            )
        )
    return rows


def scale_rows(raw: dict[str, Any]) -> list[Row]:
    rows = []
    for bench, key in (("scale", "full"), ("scale", "empty"), ("scale-booked", "full")):
        d = raw.get(bench, {}).get(key)
        if not d:
            continue
        r = d.get("restart", {})
        n = d.get("jobs")
        rss, ready = r.get("rss_mb"), r.get("ready_s")
        ok = None if rss is None else rss <= TARGETS["rss_mb"] and ready <= TARGETS["ready_s"]
        what = "booked (1 reservation each)" if d.get("booked") else "scheduled"
        rows.append(
            Row(
                f"6. {_n(n)} {what} jobs: restart → READY s; RSS / peak MB",
                f"{_n(ready, 2)} s; {_n(rss, 1)} / {_n(r.get('peak_rss_mb'), 1)} MB",
                target="≤ 10 s; ≤ 200 MB" if n else "",
                meets=_meets(ok) if n else "",
            )
        )
        due = r.get("due_to_running", {})
        if due:
            rows.append(
                Row(
                    f"6. {_n(n)} {what} jobs: start_at → running, p50 / max ms",
                    f"{_n(due.get('p50_ms'), 1)} / {_n(due.get('max_ms'), 1)}",
                )
            )
    return rows


def bookings_rows(raw: dict[str, Any]) -> list[Row]:
    b = raw.get("bookings", {})
    check, plan = b.get("check", {}), b.get("plan", {})
    ok = None if check.get("p99_us") is None else check["p99_us"] <= TARGETS["check_us"]
    return [
        Row(
            f"7. booking conflict check, {_n(b.get('reservations'))} reservations, p50 / p99 µs",
            f"{_n(check.get('median_us'), 1)} / {_n(check.get('p99_us'), 1)}",
            target="≤ 1,000",
            meets=_meets(ok),
        ),
        Row(
            "7. booking plan (resources + 2 pools), p50 / p99 µs",
            f"{_n(plan.get('median_us'), 1)} / {_n(plan.get('p99_us'), 1)}",
        ),
    ]


def windows_rows(raw: dict[str, Any]) -> list[Row]:
    w = raw.get("windows", {})
    rows = []
    for key, label in (("no_windows", "no live window"), ("with_windows", "live windows open")):
        d = w.get(key)
        if not d:
            continue
        lat = d.get("due_to_running", {})
        n = d.get("windows") or 0
        what = f"{_n(n)} {label}" if n else label
        rss = d.get("rss_mb_windows_open", d.get("rss_mb_end"))
        rows.append(
            Row(
                f"9. plain jobs due → running, 8 workers, {what}: p50 / p99 ms; RSS MB",
                f"{_n(lat.get('p50_ms'), 2)} / {_n(lat.get('p99_ms'), 2)}; {_n(rss, 1)}",
            )
        )
    return rows


def workers_rows(raw: dict[str, Any]) -> list[Row]:
    plain = raw.get("workers", {}).get("plain", [])
    return [
        Row(f"8. durable no-op jobs/s, {e['workers']} worker(s)", _n(e["jobs_per_s"]))
        for e in plain
    ]


def context_rows(raw: dict[str, Any]) -> list[Row]:
    disk = raw.get("disk")
    rows = (
        []
        if disk is None
        else [
            Row(
                "disk: write 4 KiB + fsync, p50 / p99 / max ms",
                f"{_n(disk.get('fsync_ms_p50'), 3)} / {_n(disk.get('fsync_ms_p99'), 3)} / "
                f"{_n(disk.get('fsync_ms_max'), 1)}",
            )
        ]
    )
    for run in raw.get("breakdown", {}).get("runs", []):
        rows.append(
            Row(
                f"cost per job, {run['workers']} worker(s): event loop / writer process CPU µs",
                f"{run['loop_cpu_us_per_job']} / {run.get('writer_process_cpu_us_per_job', '–')} "
                f"(loop busy {run['loop_busy_pct']}%, {run['units_per_batch']} units per batch "
                f"sent, batch p50 {run['batch_ms_p50']} ms)",
            )
        )
    return rows


def pg_rows(raw: dict[str, Any]) -> list[Row]:
    from bench import pg

    return [Row(**r) for r in pg.rows(raw.get("pg", {}))]


def pgcluster_rows(raw: dict[str, Any]) -> list[Row]:
    c = raw.get("pgcluster", {})
    rows = []
    for run in c.get("runs", []):
        what = "locking 1 of 10 assets" if run["assets"] else "plain"
        step = f"{run['step_s'] * 1000:.0f} ms steps" if run["step_s"] else "no-op"
        ideal = f" ({100 * run['of_ideal']:.0f} % of ideal)" if "of_ideal" in run else ""
        rows.append(
            Row(
                f"PostgreSQL, {run['nodes']} real node(s) via the API: {step}, {what}, jobs/s",
                f"{run['jobs_per_s']:,.0f}{ideal} (load {run['load'][0]})",
            )
        )
    take = c.get("takeover")
    if take is not None:
        got = take.get("takeover_s")
        lease = c.get("lease", 0)
        rows.append(
            Row(
                f"PostgreSQL: takeover after SIGKILL (lease {lease} s), s",
                take.get("why", "") if got is None else f"{got}",
                target=f"≤ {lease + 5}",
                meets="**no**" if got is None or got > lease + 5 else "yes",
            )
        )
    return rows


def table(raw: dict[str, Any]) -> list[Row]:
    """The rows of the benchmarks that ran (``--only`` leaves the others out)."""
    sections = (
        ("workers", throughput_rows),
        ("latency", latency_rows),
        ("api", api_rows),
        ("batch", batch_rows),
        ("scale", scale_rows),
        ("scale-booked", scale_rows),
        ("pg", pg_rows),
        ("pgcluster", pgcluster_rows),
        ("bookings", bookings_rows),
        ("windows", windows_rows),
        ("workers", workers_rows),
        ("disk", context_rows),
        ("breakdown", context_rows),
    )
    rows: list[Row] = []
    done: set[Any] = set()
    for name, section in sections:
        if name in raw and section not in done:
            done.add(section)
            rows += section(raw)
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| figure | jobd | peer | peer figure | jobd/peer | target | meets |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.figure} | {r.jobd} | {r.peer} | {r.peer_value} | {r.ratio} "
            f"| {r.target} | {r.meets} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "jobd_commit": commit,
    }


def combine(paths: list[Path], output: Path) -> None:
    """Median of several runs, benchmark by benchmark (those present in every run)."""
    runs = [json.loads(p.read_text()) for p in paths]
    names = [n for n in runs[0]["raw"] if all(n in r["raw"] for r in runs)]
    raw = {n: median_runs([r["raw"][n] for r in runs]) for n in names}
    rows = table(raw)
    meta = runs[-1]["meta"] | {
        "combined": [str(p) for p in paths],
        "dates": [r["meta"]["date"] for r in runs],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "raw": raw}, indent=2) + "\n"
    )
    print(
        f"median of {len(runs)} runs ({', '.join(meta['dates'])}) · {meta['cpus']} CPUs "
        f"({meta['cpu']}) · Python {meta['python']} · SQLite {meta['sqlite']} · "
        f"jobd {meta['jobd_commit']}\n"
    )
    print(markdown(rows))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small N, one run each (~1 min)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join((*BENCHES, *EXTRA))}")
    p.add_argument(
        "--booked",
        action="store_true",
        help="also 1,000,000 jobs that each book a resource (about a minute more)",
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="no run: the median table of earlier runs' JSON files (to --output)",
    )
    args = p.parse_args(argv)
    if args.combine:
        combine(args.combine, args.output)
        return
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    if args.booked and "scale-booked" not in names:
        names.append("scale-booked")
    unknown = set(names) - set(BENCHES) - set(EXTRA)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"jobd benchmark suite ({'quick' if args.quick else 'full'}): {', '.join(names)}")
    t0 = time.perf_counter()
    raw = collect(names, args.quick, log)
    rows = table(raw)
    meta = machine() | {
        "mode": "quick" if args.quick else "full",
        "suite_s": round(time.perf_counter() - t0, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "raw": raw}, indent=2) + "\n"
    )
    print(
        f"{meta['date']} · {meta['cpus']} CPUs ({meta['cpu']}) · Python {meta['python']} · "
        f"SQLite {meta['sqlite']} · jobd {meta['jobd_commit']} · {meta['mode']} run in "
        f"{meta['suite_s']} s\n"
    )
    print(markdown(rows))
    errors = {k: v["error"] for k, v in raw.items() if isinstance(v, dict) and "error" in v}
    for name, error in errors.items():
        log(f"\n{name} failed: {error}")
    log(f"\nwritten: {args.output}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
