"""Soak: three real nodes on one PostgreSQL under load, SIGKILLed and restarted at random.

Starts ``--nodes`` real ``jobd run`` daemons (``tests/cluster.py``) on a fresh database
of the server (``$JOBD_TEST_PG_URL``, else ``localhost:5432``; ``tests/pgserver.py``).
A submitter thread sends ``--jobs`` jobs in batches (``POST /v1/batch/jobs``) to random
live nodes over the whole run; each job's one step (an ``exec`` subprocess) appends
``start <node> <tag> <asset> <time>`` to a shared file, works ``--step-s`` seconds, and
appends ``end ...``; each job locks one of ``--assets`` assets (exclusive). Meanwhile the
chaos loop SIGKILLs a random live node every 0.5-3 s (a real crash: its step processes
live on), and starts it again 0-2 s later, ``--kills`` times. Then every job must end.

Afterwards it checks, from the database and the steps' own records:

* **no job lost**: every acknowledged submission is a job, and every job reached a
  terminal state within ``--settle-s`` seconds of the last restart;
* **no completed step re-run**: no step started after the database recorded it completed;
* **no two holders of an asset at once**: per asset, no step started while another step
  on it was running (a step with no ``end`` record, killed, counts until its start plus
  ``--step-s``);
* **no stale lock**: once every job ended, no lock request is left;
* **no node stops by itself**, but for fencing itself (its watchdog, a lost lease: the
  design, reported apart); a node that exited is started again, as systemd would.

Prints one JSON line (figures and every violation found); exits 1 if there is one.
Usage: ``python -m bench.soak [--nodes 3] [--jobs 600] [--kills 20] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/soak.py`` too
    sys.path.insert(0, str(ROOT))

from tests import pgserver  # noqa: E402  (after the path fix above)
from tests.cluster import CLUSTER_WORKFLOWS, Cluster  # noqa: E402

TERMINAL = ("completed", "failed", "timed-out", "canceled")
WORKFLOW = """
[workflows.soak]
steps = [ { name = "work", action = "exec", retries = 5, retry_backoff = 0.1, params = { argv = [
  "sh", "-c",
  "echo start $JOBD_TEST_NODE {tag} {asset} $(date +%s.%N) >> {out}; sleep {seconds}; \
echo end $JOBD_TEST_NODE {tag} {asset} $(date +%s.%N) >> {out}",
] } } ]
"""


# ----------------------------------------------------------------------------- load


class Submitter(threading.Thread):
    """Sends the jobs in batches to random live nodes, paced over ``seconds``."""

    def __init__(self, cluster: Cluster, args: argparse.Namespace, out: Path) -> None:
        super().__init__(daemon=True)
        self.cluster, self.args, self.out = cluster, args, out
        self.rng = random.Random(args.seed + 1)
        self.acked: set[str] = set()
        self.unknown: set[str] = set()
        self.errors: list[str] = []

    def bodies(self, first: int, count: int) -> list[dict[str, Any]]:
        a = self.args
        return [
            {
                "workflow": "soak",
                "assets": [f"asset-{i % a.assets}"],
                "params": {
                    "tag": f"t{i}",
                    "asset": f"asset-{i % a.assets}",
                    "out": str(self.out),
                    "seconds": a.step_s,
                },
            }
            for i in range(first, first + count)
        ]

    def run(self) -> None:
        a = self.args
        batches = range(0, a.jobs, a.batch)
        pause = a.seconds / max(len(batches), 1)
        for first in batches:
            self.send(self.bodies(first, min(a.batch, a.jobs - first)))
            time.sleep(pause)  # the load's pace, not a synchronisation

    def send(self, bodies: list[dict[str, Any]]) -> None:
        """To a random live node; a refused connection (nothing sent: a node starting or
        just killed) goes to another, up to 5 tries; any other failure leaves the batch
        "unknown" (the node may have stored it before it died)."""
        from jobd.client.remote import Client, Endpoint

        tags = {b["params"]["tag"] for b in bodies}
        for _ in range(5):
            live = [n for n, d in self.cluster.daemons.items() if d.alive]
            if not live:
                time.sleep(0.2)  # every node is down this instant: the chaos restarts one
                continue
            node = self.rng.choice(live)
            try:
                with Client(Endpoint(socket=self.cluster.layouts[node].socket)) as client:
                    client.submit_batch(bodies)
                self.acked |= tags
                return
            except Exception as exc:
                self.errors.append(f"{node}: {type(exc).__name__}: {str(exc)[:120]}")
                if "Connection refused" not in str(exc):
                    break
        self.unknown |= tags


def chaos(cluster: Cluster, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """SIGKILL a random live node and start it again, ``args.kills`` times; a node that
    exited by itself meanwhile is started again too (as systemd would), with its reason."""
    rng = random.Random(args.seed)
    kills: list[dict[str, Any]] = []
    exits: list[dict[str, Any]] = []
    for _ in range(args.kills):
        time.sleep(rng.uniform(0.5, 3.0))  # chaos timing is the workload itself
        for name in [n for n, d in cluster.daemons.items() if not d.alive]:
            exits.append({"node": name, "why": exit_reason(cluster, name)})
            restart(cluster, name, exits[-1])
        live = [n for n, d in cluster.daemons.items() if d.alive]
        name = rng.choice(live or sorted(cluster.daemons))
        kill: dict[str, Any] = {"node": name, "at": round(time.time(), 3)}
        cluster.kill(name)
        time.sleep(rng.uniform(0.0, 2.0))
        restart(cluster, name, kill)
        kills.append(kill)
        log(f"  killed and restarted {name} ({len(kills)}/{args.kills})")
    return {"kills": kills, "exits": exits}


#: Starts of a node that fenced itself before READY tried again, as systemd's
#: ``Restart=on-failure`` would, before a failed restart counts as a violation.
RESTART_TRIES = 3


def restart(cluster: Cluster, name: str, record: dict[str, Any]) -> None:
    """Start ``name`` again; a start that ends in the node fencing itself (it could not
    renew its lease in time, under overload) is the design and is tried again; any other
    failed start, or ``RESTART_TRIES`` fenced ones, is recorded as ``restart_failed``."""
    for _ in range(RESTART_TRIES):
        try:
            cluster.start(name)
            return
        except AssertionError as exc:  # it did not come back: a finding, not the end
            failure = str(exc).splitlines()[0][:300]
        why = exit_reason(cluster, name)
        if cluster.daemons[name].alive or not any(k in why for k in SELF_FENCING):
            break
        record.setdefault("fenced_at_start", []).append(why)
    record["restart_failed"] = failure


def exit_reason(cluster: Cluster, name: str) -> str:
    """Why node ``name`` exited by itself: its last error, or its watchdog's last word, in
    the log of its last run (back to that run's ``jobd ready``, or the end of the run
    before: the log is appended to by every run)."""
    daemon = cluster.daemons[name]
    for line in reversed(daemon.log_text().splitlines()):
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("level") in ("error", "critical"):
                return str(event.get("event"))[:300]
            if str(event.get("event")).startswith(("jobd ready", "jobd stopped")):
                break  # the start of this run, or the end of the one before
        elif "watchdog" in line or "fenced" in line:
            return line[:300]
    return f"exit {daemon.proc.poll()}"


#: Self-exits that are the design (a node that cannot renew its lease fences itself).
SELF_FENCING = ("watchdog", "fenced", "lease")


# ----------------------------------------------------------------------------- checks


def settle(cluster: Cluster, deadline_s: float) -> dict[str, int]:
    """Wait (polling the database, with a deadline) until every job is terminal."""
    deadline = time.monotonic() + deadline_s
    while True:
        rows = cluster.sql("SELECT state, count(*) FROM jobs GROUP BY state")
        states = {r[0]: int(r[1]) for r in rows}
        if all(s in TERMINAL for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def read_marks(out: Path) -> list[tuple[str, str, str, str, float]]:
    marks = []
    text = out.read_text() if out.exists() else ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5:
            marks.append((parts[0], parts[1], parts[2], parts[3], float(parts[4])))
    return marks


def overlaps(marks: list[tuple[str, str, str, str, float]], step_s: float) -> list[str]:
    """Steps that started on an asset while another step on it was running."""
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    ends: dict[tuple[str, str, float], float] = {}
    where: dict[tuple[str, float], str] = {}
    for event, node, tag, asset, t in marks:
        if event == "start":
            runs[(asset, tag)].append(t)
            where[(tag, t)] = node
    for event, _, tag, asset, t in marks:
        if event == "end":
            starts = [s for s in runs[(asset, tag)] if s <= t]
            if starts:
                ends[(asset, tag, max(starts))] = t
    by_asset: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for (asset, tag), starts in runs.items():
        for s in starts:
            run = f"{tag} on {where[(tag, s)]}"
            by_asset[asset].append((s, ends.get((asset, tag, s), s + step_s), run))
    found = []
    for asset, spans in by_asset.items():
        spans.sort()
        end, holder = 0.0, ""
        for s, e, run in spans:
            if s < end:
                found.append(f"{asset}: {run} started {end - s:.3f} s before {holder} ended")
            if e > end:
                end, holder = e, run
    return found


def reruns(cluster: Cluster, marks: list[tuple[str, str, str, str, float]]) -> list[str]:
    """Steps that started again after the database recorded them completed."""
    rows = cluster.sql(
        "SELECT j.spec::jsonb -> 'params' ->> 'tag', s.ended_at FROM jobs j"
        " JOIN steps s ON s.job_id = j.id WHERE s.state = 'completed'"
    )
    done = {tag: ended for tag, ended in rows}
    return [
        f"{tag} started on {node} at {t:.3f}, completed at {done[tag]:.3f}"
        for event, node, tag, _, t in marks
        if event == "start" and tag in done and done[tag] is not None and t > done[tag]
    ]


def deaths(cluster: Cluster, exits: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Self-exits (restarted) and nodes dead at the end, split into those that fenced
    themselves (the design) and the others (a bug: a daemon must not stop by itself)."""
    reasons = [e["why"] for e in exits]
    reasons += [exit_reason(cluster, n) for n, d in cluster.daemons.items() if not d.alive]
    fenced = [r for r in reasons if any(k in r for k in SELF_FENCING)]
    return {"crashed": [r for r in reasons if r not in fenced], "fenced": fenced}


def check(
    cluster: Cluster,
    sub: Submitter,
    states: dict[str, int],
    out: Path,
    step_s: float,
    exits: list[dict[str, Any]],
) -> dict[str, Any]:
    marks = read_marks(out)
    stored = [r[0] for r in cluster.sql("SELECT spec::jsonb -> 'params' ->> 'tag' FROM jobs")]
    counted: dict[str, int] = defaultdict(int)
    for tag in stored:
        counted[tag] += 1
    locks = cluster.sql("SELECT job_id, node, granted_at IS NOT NULL FROM lock_requests")
    ends: dict[str, int] = defaultdict(int)
    for event, _, tag, _, _ in marks:
        ends[tag] += event == "end"
    died = deaths(cluster, exits)
    return {
        "nodes_crashed": died["crashed"][:20],
        "nodes_fenced_themselves": died["fenced"][:20],
        "lost": sorted(sub.acked - set(counted))[:50],
        "not_ended": {s: n for s, n in states.items() if s not in TERMINAL},
        "stored_twice": sorted(t for t, n in counted.items() if n > 1)[:50],
        "reruns_after_completed": reruns(cluster, marks)[:50],
        "two_holders": overlaps(marks, step_s)[:50],
        "stale_locks": [list(r) for r in locks][:50],
        "info": {
            "steps_started": sum(1 for m in marks if m[0] == "start"),
            "steps_ended_twice": sum(1 for n in ends.values() if n > 1),
        },
    }


# ----------------------------------------------------------------------------- main


#: What counts as a violation (the run exits 1, and keeps its nodes' files for their logs).
VIOLATIONS = (
    "lost",
    "not_ended",
    "stored_twice",
    "reruns_after_completed",
    "two_holders",
    "stale_locks",
    "nodes_crashed",
    "restarts_failed",
)


def soak(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    with pgserver.server() as server, pgserver.fresh_database(server) as url:
        base = Path(os.environ.get("TMPDIR", "/tmp")) / f"jobd-soak-{os.getpid()}"
        cluster = Cluster(url, base, workflows=CLUSTER_WORKFLOWS + WORKFLOW)
        keep = args.keep
        try:
            report = _run(cluster, args, log)
            keep = keep or any(report[k] for k in VIOLATIONS)
            report["files"] = str(base) if keep else None
            return report
        finally:
            cluster.close()
            if not keep:
                shutil.rmtree(base, ignore_errors=True)


def _run(cluster: Cluster, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    out = cluster.base / "marks"
    cluster.start(
        *[chr(ord("a") + i) for i in range(args.nodes)], lease=args.lease, workers=args.workers
    )
    sub = Submitter(cluster, args, out)
    t0 = time.time()
    sub.start()
    done = chaos(cluster, args, log)
    sub.join()
    states = settle(cluster, args.settle_s)
    report = check(cluster, sub, states, out, args.step_s, done["exits"])
    failed = [k for k in done["kills"] + done["exits"] if "restart_failed" in k]
    report |= {"states": states, "kills": len(done["kills"]), "restarts_failed": failed}
    report["seconds"] = round(time.time() - t0)
    report["acked"], report["unknown"] = len(sub.acked), len(sub.unknown)
    report["submit_errors"] = sub.errors[:10]
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--jobs", type=int, default=600)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--assets", type=int, default=10)
    p.add_argument("--step-s", type=float, default=0.5)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seconds", type=float, default=40.0, help="submissions spread over")
    p.add_argument("--lease", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--settle-s", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--keep", action="store_true", help="keep the nodes' files (else only on a violation)"
    )
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = soak(args, log) | {"bench": "soak", "args": vars(args), "load": os.getloadavg()}
    print(json.dumps(report))
    if any(report[k] for k in VIOLATIONS):
        sys.exit(1)


if __name__ == "__main__":
    main()
