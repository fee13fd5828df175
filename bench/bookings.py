"""Benchmark the booking index: ``python bench/bookings.py [--reservations N] [--seed S]``.

Not a test. Builds N reservations (default 100,000) over 20 resources (capacity
1-3) and 2 pools, spread over a year with durations of 10 min to 4 h, loads
them, then times random ``check`` and ``plan`` calls (a plan that conflicts
counts too: that is the common case on a busy index). Prints one JSON line:
load time in ms, median and p99 in µs per call.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from jobd.config import PoolConfig, ResourceConfig
from jobd.core.errors import BookingConflict
from jobd.core.models import Reservation
from jobd.plan.bookings import BookingIndex

YEAR = 365 * 86400.0
RESOURCES = [f"res-{i:02d}" for i in range(20)]


def build(n: int, rng: random.Random) -> tuple[BookingIndex, list[Reservation]]:
    resources = {name: ResourceConfig(name, capacity=1 + i % 3) for i, name in enumerate(RESOURCES)}
    pools = {
        "encoders": PoolConfig("encoders", tuple(RESOURCES[:5])),
        "studios": PoolConfig("studios", tuple(RESOURCES[5:10])),
    }
    rows = [_random_reservation(job, rng.choice(RESOURCES), rng) for job in range(1, n + 1)]
    return BookingIndex(resources, pools), rows


def _random_reservation(job: int, resource: str, rng: random.Random) -> Reservation:
    start = rng.uniform(0, YEAR)
    return Reservation(job, resource, start, start + rng.uniform(600, 4 * 3600))


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p99_us": round(p99 / 1000, 2),
    }


def time_checks(index: BookingIndex, rng: random.Random, calls: int) -> list[int]:
    samples = []
    for _ in range(calls):
        r = _random_reservation(0, rng.choice(RESOURCES), rng)
        t0 = time.perf_counter_ns()
        index.check(r.resource, r.start, r.end)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def time_plans(index: BookingIndex, rng: random.Random, calls: int) -> tuple[list[int], int]:
    samples, conflicts = [], 0
    for _ in range(calls):
        r = _random_reservation(0, rng.choice(RESOURCES[10:]), rng)
        t0 = time.perf_counter_ns()
        try:
            index.plan(10**9, [r.resource], ["encoders", "studios"], r.start, r.end)
        except BookingConflict:
            conflicts += 1
        samples.append(time.perf_counter_ns() - t0)
    return samples, conflicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reservations", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    index, rows = build(args.reservations, rng)
    t0 = time.perf_counter()
    index.load(rows)
    load_ms = (time.perf_counter() - t0) * 1000
    checks = time_checks(index, rng, args.calls)
    plans, conflicts = time_plans(index, rng, args.calls)
    print(
        json.dumps(
            {
                "reservations": args.reservations,
                "resources": len(RESOURCES),
                "load_ms": round(load_ms, 1),
                "check": percentiles(checks),
                "plan": percentiles(plans) | {"conflicts": conflicts, "calls": args.calls},
            }
        )
    )


if __name__ == "__main__":
    main()
