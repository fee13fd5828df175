"""The event loop's instructions per job, counted by callgrind (wall clock cannot tell 10 %
on a shared 2-core machine; instruction counts do not see the other sessions' load).

For each case (workers, plain or locking 1 of 10 assets) it runs ``bench.engine``'s
throughput run of exactly N jobs under ``valgrind --tool=callgrind --separate-threads=yes``
at two sizes, reads the main thread's total (the event loop: the writer process is not
traced, the reader and worker threads are counted apart), and prints the difference divided
by the extra jobs: start-up, imports and the first batches drop out.

Usage::

    python -m bench.loopcost [--tree PATH] [--sizes 1000,2000] [--cases 8,8L,64,64L]
    python -m bench.loopcost --run N WORKERS ASSETS     (one run: what valgrind runs)

``--tree``: the checkout whose ``jobd`` is measured (PYTHONPATH), e.g. a ``git archive`` of
main, with this file's own copy driving it: A/B with the same driver.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def one_run(n: int, workers: int, assets: int) -> None:
    from bench.engine import run, throughput

    rate = run(throughput, n, workers, 512, assets)
    print(json.dumps({"jobs": n, "workers": workers, "assets": assets, "jobs_per_s": rate}))


def loop_instructions(tree: Path, n: int, workers: int, assets: int) -> int:
    """Instructions of the main thread (the event loop) for one run of ``n`` jobs."""
    with tempfile.TemporaryDirectory(prefix="jobd-cg-") as tmp:
        out = Path(tmp) / "cg"
        # The driver is this checkout's bench/ (so both trees run the same driver); jobd
        # comes from ``tree``, ahead of it on the path.
        env = {**os.environ, "PYTHONPATH": f"{tree}:{HERE.parent}", "PYTHONHASHSEED": "0"}
        argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
        argv += [f"--callgrind-out-file={out}", sys.executable, "-m", "bench.loopcost"]
        argv += ["--run", str(n), str(workers), str(assets)]
        subprocess.run(argv, env=env, check=True, capture_output=True, cwd=tmp)
        return read_total(out.with_name("cg-01"))


def read_total(path: Path) -> int:
    """The instruction total of one callgrind output file (one thread's)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def case(tree: Path, spec: str, sizes: list[int]) -> dict[str, Any]:
    workers, assets = int(spec.rstrip("L")), 10 if spec.endswith("L") else 0
    counts = [loop_instructions(tree, n, workers, assets) for n in sizes]
    per_job = (counts[-1] - counts[0]) / (sizes[-1] - sizes[0])
    return {
        "workers": workers,
        "assets": assets,
        "sizes": sizes,
        "loop_instructions": counts,
        "per_job": round(per_job),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs=3, type=int, metavar=("N", "WORKERS", "ASSETS"))
    p.add_argument("--tree", type=Path, default=HERE.parent)
    p.add_argument("--sizes", default="1000,2000")
    p.add_argument("--cases", default="8,8L,64,64L", help="workers, L: locked (1 of 10 assets)")
    args = p.parse_args(argv)
    if args.run:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
        one_run(*args.run)
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    cases = [case(args.tree.resolve(), spec, sizes) for spec in args.cases.split(",")]
    print(json.dumps({"bench": "loopcost", "tree": str(args.tree), "cases": cases}))


if __name__ == "__main__":
    main()
