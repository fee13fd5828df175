"""Real ``jobd run`` nodes on one PostgreSQL: throughput of 1 and of 3 nodes, takeover time.

Nodes are started by ``tests/cluster.py`` (each its own process, config and socket) on a
fresh database of the server (``tests/pgserver.py``: ``$JOBD_TEST_PG_URL`` or
``localhost:5432``). Unlike ``bench/pg.py`` (the engine in the benchmark's process), the
jobs go in through the API: ``POST /v1/batch/jobs`` of ``--batch`` jobs, one submitting
thread per node, the batches dealt round-robin; done is counted in the database
(``completed`` rows, polled every 20 ms), from the first submission to the N-th.

* ``throughput``: N no-op jobs (``bench/plugins/noop.py``), plain and each locking 1 of
  10 assets; the same with a 50 ms step (``pause``), where the locked ideal is 200/s.
* ``takeover``: a job holds a step (waits for a file) on node ``a``; ``a`` is SIGKILLed;
  the time until the database shows the job taken up by another node (the job's first
  history row written after the kill: ``a`` is not restarted), against lease + 5 s.

Prints one JSON line. Usage: ``python -m bench.pgcluster [--nodes 1,3] [--jobs 5000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import e2e, pgserver  # noqa: E402
from tests.cluster import CLUSTER_WORKFLOWS, Cluster  # noqa: E402

PLUGIN = ROOT / "bench" / "plugins" / "noop.py"
WORKFLOWS = """
[workflows.noop]
steps = [ { name = "n", action = "noop" } ]

[workflows.pause]
steps = [ { name = "p", action = "pause", params = { seconds = {step_s} } } ]
"""


def _cluster(url: str, names: list[str], args: argparse.Namespace, step_s: float) -> Cluster:
    flows = CLUSTER_WORKFLOWS + WORKFLOWS.replace("{step_s}", str(step_s))
    cluster = Cluster(url, e2e.short_dir(), workflows=flows)
    for name in names:
        layout = cluster.add(name, lease=args.lease, workers=args.workers)
        shutil.copy(PLUGIN, layout.plugins / "bench_noop.py")
        text = layout.config.read_text().replace('level = "info"', 'level = "warning"')
        layout.config.write_text(text)
    cluster.start(*names)
    return cluster


def _submit(cluster: Cluster, name: str, bodies: list[dict[str, Any]], batch: int) -> None:
    from jobd.client.remote import Client, Endpoint

    with Client(Endpoint(socket=cluster.layouts[name].socket), timeout=120) as client:
        for i in range(0, len(bodies), batch):
            client.submit_batch(bodies[i : i + batch])


COMPLETED = "SELECT count(*) FROM jobs WHERE state = 'completed'"


def _wait_done(cluster: Cluster, n: int, deadline_s: float) -> None:
    """Poll the count of completed jobs on one connection held for the whole wait: a
    connection a poll (``cluster.sql``) forks a PostgreSQL backend each time, ~90 of them in
    a 3 s run, whose start-up took CPU from the nodes being measured."""
    deadline = time.monotonic() + deadline_s
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        while _count(conn) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {n} jobs completed in {deadline_s:.0f} s")
            time.sleep(0.02)  # polling the outcome; the figure's resolution


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(COMPLETED).fetchone()
    return int(row[0]) if row else 0


def _by_node(cluster: Cluster) -> dict[str, int]:
    """Jobs per node that ran them (``jobs.node``, once the cluster records it)."""
    has = cluster.sql(
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'jobs' AND column_name = 'node'"
    )
    if not has:
        return {"?": int(cluster.sql("SELECT count(*) FROM jobs")[0][0])}
    return {str(k): int(v) for k, v in cluster.sql("SELECT node, count(*) FROM jobs GROUP BY 1")}


def throughput(
    server: str, nodes: int, n: int, assets: int, step_s: float, args: argparse.Namespace
) -> dict[str, Any]:
    names = [chr(ord("a") + i) for i in range(nodes)]
    flow = "pause" if step_s else "noop"
    bodies = [
        {"workflow": flow, "assets": [f"asset-{i % assets}"] if assets else []} for i in range(n)
    ]
    with pgserver.fresh_database(server) as url:
        cluster = _cluster(url, names, args, step_s)
        try:
            load0 = os.getloadavg()[0]
            threads = [
                threading.Thread(target=_submit, args=(cluster, name, bodies[k::nodes], args.batch))
                for k, name in enumerate(names)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            _wait_done(cluster, n, 600)
            wall = time.perf_counter() - t0
            by_node = _by_node(cluster)
        finally:
            cluster.close()
    out: dict[str, Any] = {"nodes": nodes, "jobs": n, "assets": assets, "step_s": step_s}
    out |= {"jobs_per_s": round(n / wall, 1), "by_node": by_node}
    out["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    if step_s and assets:
        out["ideal_per_s"] = assets / step_s
        out["of_ideal"] = round(out["jobs_per_s"] / out["ideal_per_s"], 3)
    return out


def takeover(server: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from SIGKILL of the job's node to another node taking the job up."""
    with pgserver.fresh_database(server) as url:
        cluster = _cluster(url, ["a", "b", "c"], args, 0.05)
        try:
            gate = cluster.base / "never"
            job = cluster.submit("a", "hold", "-p", f"path={gate}")
            deadline = time.monotonic() + 60
            while cluster.sql("SELECT state FROM jobs WHERE id = %s", (job,))[0][0] != "running":
                if time.monotonic() > deadline:
                    raise RuntimeError("the held job never ran")
                time.sleep(0.02)
            t0 = time.time()
            cluster.kill("a")
            return _taken_up(cluster, job, t0, args.lease + 30)
        finally:
            cluster.close()


def _taken_up(cluster: Cluster, job: int, t0: float, limit_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        # Node a is dead and not restarted: any later history row is another node's.
        rows = cluster.sql(
            "SELECT at, to_state FROM history WHERE job_id = %s AND at > %s ORDER BY id LIMIT 1",
            (job, t0),
        )
        if rows:
            return {"takeover_s": round(rows[0][0] - t0, 2), "to_state": rows[0][1]}
        time.sleep(0.05)
    return {"takeover_s": None, "why": f"no other node took the job up in {limit_s:.0f} s"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3])
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--step-jobs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--lease", type=float, default=5.0)
    p.add_argument("--only", default="throughput,takeover")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    out: dict[str, Any] = {"bench": "pgcluster", "lease": args.lease, "runs": []}
    with pgserver.server() as server:
        if "throughput" in args.only:
            for nodes in args.nodes:
                for n, assets, step in (
                    (args.jobs, 0, 0.0),
                    (args.jobs, 10, 0.0),
                    (args.step_jobs, 0, 0.05),
                    (args.step_jobs, 10, 0.05),
                ):
                    run = throughput(server, nodes, n, assets, step, args)
                    print(f"  {run}", file=sys.stderr, flush=True)
                    out["runs"].append(run)
        if "takeover" in args.only:
            out["takeover"] = takeover(server, args)
            print(f"  takeover: {out['takeover']}", file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
