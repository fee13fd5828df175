"""Where the timer row's tail comes from: each ring of the due alarm, and the loop thread's
own CPU time and run delay between two rings.

``bench/handoff.py``'s timer row (N jobs with ``start_at`` spread at 1,000/s, ``start_at`` →
``running``), with the due alarm's ring (``WallClockAlarm._on_ready``) stamped: the wall time,
the loop thread's CPU time (``time.thread_time``) and its run delay, the time it spent
runnable but waiting for a CPU (``/proc/thread-self/schedstat``, second field). At 1,000/s the
alarm rings about every millisecond; a gap of several is a stall, and the two figures say
whose: the loop's own work (its CPU time fills the gap), or the machine's (the thread was
ready, another task had the CPU: the run delay fills it), or neither (it slept in a call).

Prints one JSON line: the row's p50/p99, every gap over ``--gap`` ms with its CPU and run
delay, and the share of the row's slowest 1 % that were due within a gap. Usage:
``python -m bench.timertail [--jobs N] [--gap MS]``.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import pairwise
from pathlib import Path

import jobd.plan.alarm as alarm
from bench.engine import run as run_loop
from bench.handoff import timer_rows

SCHEDSTAT = Path("/proc/thread-self/schedstat")

#: (wall, thread CPU, run delay) at each ring, in seconds.
RINGS: list[tuple[float, float, float]] = []


def _stamp_rings() -> None:
    ring = alarm.WallClockAlarm._on_ready

    def stamped(self: alarm.WallClockAlarm) -> None:
        delay = int(SCHEDSTAT.read_text().split()[1]) / 1e9
        RINGS.append((time.time(), time.thread_time(), delay))
        ring(self)

    alarm.WallClockAlarm._on_ready = stamped  # type: ignore[method-assign]


def gaps(first: float, gap_ms: float) -> list[dict[str, float]]:
    """The stalls between two rings after the first due time."""
    rings = [r for r in RINGS if r[0] >= first]
    return [
        {
            "at_s": round(t0 - first, 3),
            "gap_ms": round((t1 - t0) * 1000, 2),
            "loop_cpu_ms": round((c1 - c0) * 1000, 2),
            "run_delay_ms": round((d1 - d0) * 1000, 2),
        }
        for (t0, c0, d0), (t1, c1, d1) in pairwise(rings)
        if (t1 - t0) * 1000 > gap_ms
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--gap", type=float, default=2.5, help="a stall: rings further apart (ms)")
    args = p.parse_args(argv)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    _stamp_rings()
    out = run_loop(timer_rows, args.jobs, args.rate, args.workers)
    first, rows = out["first"], out["rows"]
    latencies = sorted(lat for _, lat in rows)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    stalls = gaps(first, args.gap)
    spans = [(first + g["at_s"], first + g["at_s"] + g["gap_ms"] / 1000) for g in stalls]
    tail = [due for due, lat in rows if lat >= p99]
    in_stall = sum(1 for due in tail if any(a <= due <= b for a, b in spans))
    print(
        json.dumps(
            {
                "bench": "timertail",
                "jobs": len(rows),
                "p50_ms": round(latencies[len(latencies) // 2], 3),
                "p99_ms": round(p99, 3),
                "max_ms": round(latencies[-1], 3),
                "rings": sum(1 for r in RINGS if r[0] >= first),
                "tail_jobs_due_in_a_stall": f"{in_stall} of {len(tail)}",
                "stalls": stalls,
            }
        )
    )


if __name__ == "__main__":
    main()
