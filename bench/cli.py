"""CLI start-up: ``jobd list``, ``jobd show ID`` and ``jobd --help`` as whole processes.

Against the real daemon (started as :mod:`bench.api` starts it) holding a few
hundred jobs, each command is run ``--runs`` times after one warm-up, with
stdout a pipe (as a script reads it: plain lines, no rich), as it is installed:
the ``jobd`` console script beside the interpreter, with bytecode cached (the
warm-up writes it). Reports the median
wall-clock milliseconds and the median CPU milliseconds of each (the CPU from
the children's resource usage, so it says what the command costs even when
other processes share the cores), and the same for bare ``python -c pass``.

Prints one JSON line. Usage: ``python -m bench.cli [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from bench.api import daemon, short_dir, write_config
from jobd.client.remote import Client, Endpoint


def _run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run (CPU: user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1e3, cpu * 1e3


def measure(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    _run_once(argv, env)  # warm-up: the page cache and .pyc files
    walls, cpus = zip(*(_run_once(argv, env) for _ in range(runs)), strict=True)
    return {
        "wall_ms_median": round(statistics.median(walls), 1),
        "wall_ms_min": round(min(walls), 1),
        "cpu_ms_median": round(statistics.median(cpus), 1),
    }


def run(runs: int) -> dict[str, dict[str, float]]:
    base = short_dir()
    try:
        config = write_config(base)
        with daemon(base, config) as d:
            with Client(Endpoint(socket=d.socket)) as client:
                client.submit_batch([{"workflow": "noop"} for _ in range(300)])
            # As installed: the console script, and bytecode cached (pip compiles a wheel's
            # modules; PYTHONDONTWRITEBYTECODE would compile jobd's from source every run).
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("JOBD_") and k != "PYTHONDONTWRITEBYTECODE"
            }
            env["JOBD_SOCKET"] = str(d.socket)
            script = os.path.join(os.path.dirname(sys.executable), "jobd")
            jobd = [script] if os.path.exists(script) else [sys.executable, "-m", "jobd"]
            return {
                "python -c pass": measure([sys.executable, "-c", "pass"], env, runs),
                "jobd list": measure([*jobd, "list"], env, runs),
                "jobd show 1": measure([*jobd, "show", "1"], env, runs),
                "jobd --help": measure([*jobd, "--help"], env, runs),
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args(argv)
    figures = run(args.runs)
    # Load average at the end: wall times stretch with it (CPU times much less).
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"bench": "cli", **figures, "load_average": load}))


if __name__ == "__main__":
    main()
