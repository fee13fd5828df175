"""What a throughput run commits, counted (docs/performance.md, issue 10, round 13).

The suite's driver (``bench.engine.throughput``) on the tree on PYTHONPATH (this file works on
``71204ee`` too), its writer wrapped by ``bench/commits_writer.py`` (each transaction: frames,
units, times) and fsync/fdatasync counted, or padded to a fixed latency, by
``bench/fixsync.c`` (built with ``cc`` and LD_PRELOADed into the writer only).

    PYTHONPATH=TREE python /path/to/bench/commits.py N WORKERS ASSETS OUT [FSYNC_US] [REPEAT]

One JSON line per run; OUT.<run> keeps each run's transactions.
"""

from __future__ import annotations

import asyncio
import glob
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter as C
from pathlib import Path

try:
    sw = importlib.import_module("jobd.store.sqlite.sqlwriter")
except ImportError:
    sw = importlib.import_module("jobd.sqlwriter")
os.environ["PROBE_REAL_DIR"] = os.path.dirname(os.path.abspath(sw.__file__))
HERE = Path(__file__).resolve().parent
sw.__file__ = str(HERE / "commits_writer.py")

import bench.engine as be  # noqa: E402
from jobd.engine import Engine  # noqa: E402

try:
    from jobd.core.states import JobState
except ImportError:
    from jobd.states import JobState

N, W, A, OUT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
SHIM = OUT + ".fixsync.so"
subprocess.run(
    ["cc", "-O2", "-shared", "-fPIC", "-o", SHIM, str(HERE / "fixsync.c"), "-ldl"], check=True
)
os.environ["LD_PRELOAD"] = SHIM  # inherited by the writer process, started after this
os.environ["FIXSYNC_US"] = sys.argv[5] if len(sys.argv) > 5 else "0"
os.environ["PROBE_OUT"] = OUT + ".w"
for f in glob.glob(OUT + ".w.*"):
    os.remove(f)


async def body(engine: Engine) -> dict:
    store = engine.store
    writer = store._writer
    sends = []
    send = writer.send

    def timed_send(units):
        sends.append((time.perf_counter(), len(units)))
        send(units)

    writer.send = timed_send
    run_at, done_at = {}, {}

    def listen(ev):
        if ev.kind != "state":
            return
        if ev.to_state == JobState.RUNNING:
            run_at[ev.job_id] = time.perf_counter()
        elif ev.to_state == JobState.COMPLETED:
            done_at[ev.job_id] = time.perf_counter()
            if len(done_at) >= N:
                fin.set()

    fin = asyncio.Event()
    engine.add_listener(listen)
    t0 = time.perf_counter()
    await be.submit_all(engine, be.noop_specs(N, A), 512)
    t_sub = time.perf_counter()
    await fin.wait()
    t1 = time.perf_counter()
    writer.send = send
    return dict(t0=t0, t_sub=t_sub, t1=t1, sends=sends, run_at=run_at, done_at=done_at)


async def go():
    with tempfile.TemporaryDirectory(prefix="jobd-probe-") as tmp:
        return await be._with_engine(Path(tmp), W, max(N, 1000), body)


import structlog  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


def analyse(r, rep):
    time.sleep(0.3)
    txs = []
    for f in glob.glob(OUT + ".w.*"):
        txs += json.loads(Path(f).read_text())
    t0, t_sub, t1 = r["t0"], r["t_sub"], r["t1"]
    txs = [t for t in txs if t0 <= t[1] <= t1 + 0.001]
    tail = [t for t in txs if t[0] >= t_sub]
    sends = [s for s in r["sends"] if t0 <= s[0] <= t1]
    tail_sends = [s for s in sends if s[0] >= t_sub]
    run_at, done_at = r["run_at"], r["done_at"]
    tail_jobs = [j for j in done_at if run_at.get(j, 0) >= t_sub]
    r2c = sorted((done_at[j] - run_at[j]) * 1e3 for j in tail_jobs)
    wall_tail = t1 - t_sub
    busy = sum(b - a for a, b, _, _ in tail)
    gaps = sorted((tail[i + 1][0] - tail[i][1]) * 1e3 for i in range(len(tail) - 1))
    res = {
        "workers": W,
        "assets": A,
        "jobs": N,
        "jobs_per_s": round(N / (t1 - t0)),
        "sub_s": round(t_sub - t0, 3),
        "tail_s": round(wall_tail, 3),
        "tail_jobs": len(tail_jobs),
        "syncs_per_job": round(
            sum(int(Path(f).read_text().split()[0]) for f in glob.glob(OUT + ".sync.*")) / N, 3
        ),
        "sub_tx": len(txs) - len(tail),
        "sub_units_per_tx": round(
            sum(t[3] for t in txs if t[0] < t_sub) / max(1, len(txs) - len(tail)), 1
        ),
        "sub_done": sum(1 for j, t in done_at.items() if t < t_sub),
        "tail_jobs_per_s": round(len(tail_jobs) / wall_tail) if wall_tail else None,
        "tx_per_job": round(len(txs) / N, 3),
        "tail_tx": len(tail),
        "tail_tx_per_job": round(len(tail) / max(len(tail_jobs), 1), 3),
        "tail_sends_per_job": round(len(tail_sends) / max(len(tail_jobs), 1), 3),
        "tail_units_per_tx": dict(sorted(C(t[3] for t in tail).items())),
        "tail_frames_per_tx": dict(sorted(C(t[2] for t in tail).items())),
        "tail_tx_ms_p50": round(statistics.median([(b - a) * 1e3 for a, b, _, _ in tail]), 3)
        if tail
        else None,
        "tail_writer_busy_pct": round(100 * busy / wall_tail, 1),
        "tail_writer_gap_ms_p50": round(statistics.median(gaps), 3) if gaps else None,
        "run_to_done_ms_p50": round(statistics.median(r2c), 3) if r2c else None,
        "run_to_done_ms_p90": round(r2c[int(len(r2c) * 0.9)], 3) if r2c else None,
    }
    Path(f"{OUT}.{rep}").write_text(
        json.dumps(
            {
                "summary": res,
                "tail": tail,
                "t_sub": t_sub,
                "t1": t1,
                "sends": tail_sends,
                "run": {j: run_at[j] for j in tail_jobs},
                "done": {j: done_at[j] for j in tail_jobs},
            }
        )
    )
    print(json.dumps(res), flush=True)


R = int(sys.argv[6]) if len(sys.argv) > 6 else 1
for rep in range(R):
    for f in glob.glob(OUT + ".w.*") + glob.glob(OUT + ".sync.*"):
        os.remove(f)
    os.environ["FIXSYNC_COUNT"] = OUT + ".sync"
    analyse(be.run(go), rep)
