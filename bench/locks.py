"""Micro-benchmark of jobd.engine.locks.LockManager (not a test). Prints one JSON object.

* ``uncontended_pairs_per_s``: acquire + release of one exclusive asset, never waiting.
* ``handoff_mean_us``: cost of one ``release`` that grants the next waiter, with
  10 assets each holding a queue of waiters (the engine's hot path when busy).
* ``contended_jobs_per_s``: whole jobs (acquire that waits, then the hand-off
  that grants it, then its own release) over 10 assets.

Usage: ``python bench/locks.py [--n N]``; report the median of several runs.
"""

from __future__ import annotations

import argparse
import json
import time

from jobd.engine.locks import LockManager

ASSETS = [f"asset-{i}" for i in range(10)]


def uncontended(n: int) -> float:
    locks = LockManager()
    t0 = time.perf_counter()
    for owner in range(n):
        locks.acquire(owner, (ASSETS[owner % 10],))
        locks.release(owner)
    return n / (time.perf_counter() - t0)


def handoff(n: int, depth: int = 20) -> tuple[float, float]:
    """Keep ``depth`` waiters per asset; time releases (each grants one) and whole jobs."""
    locks = LockManager()
    holders: list[int] = []
    owner = 0
    for asset in ASSETS:
        for _ in range(depth + 1):
            if locks.acquire(owner, (asset,)):
                holders.append(owner)
            owner += 1
    release_time = 0.0
    t_all = time.perf_counter()
    for i in range(n):
        holder = holders[i % 10]
        t0 = time.perf_counter()
        granted = locks.release(holder)
        release_time += time.perf_counter() - t0
        holders[i % 10] = granted[0]
        locks.acquire(owner, (ASSETS[i % 10],))  # refill the queue: it waits
        owner += 1
    total = time.perf_counter() - t_all
    return release_time / n * 1e6, n / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    handoff_us, contended = handoff(args.n)
    print(
        json.dumps(
            {
                "n": args.n,
                "uncontended_pairs_per_s": round(uncontended(args.n)),
                "handoff_mean_us": round(handoff_us, 3),
                "contended_jobs_per_s": round(contended),
            }
        )
    )


if __name__ == "__main__":
    main()
