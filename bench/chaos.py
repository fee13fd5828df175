"""Chaos: bench/soak.py's load and checks, under faults beyond SIGKILL.

Three real nodes (``tests/cluster.py``), each reaching the database through its own relay
(``proxied``), under the soak's load (``bench/soak.py``: jobs in batches to random live
nodes, each an ``exec`` step recording ``start``/``end`` and locking 1 of ``--assets``
assets), and every ``--hang-every``-th job instead a **hung step**: one that ignores
SIGTERM and sleeps far past its ``timeout`` (it must end ``failed``, killed by SIGKILL
after ``kill_grace``). Every 0.5-3 s a random live node gets one fault, ``--faults`` times:

* ``kill``: SIGKILL (its step processes live on until its watchdog kills them), started
  again 0-2 s later;
* ``freeze``: SIGSTOP for 0.2-1.5 leases, then SIGCONT: a short freeze must be survived,
  a long one ends in the node's watchdog killing its steps and the node *before* its
  lease runs out;
* ``terminate``: the server ends the node's sessions (``pg_terminate_backend`` on the
  backends of its relay's connections), as a PostgreSQL restart does: the node stops
  with an error.

A node that exited is started again at the next fault (as systemd would). Then every job
must end within ``--settle-s`` s, and besides the soak's checks (no job lost, none stored
twice, no completed step re-run, no two holders of an asset, no stale lock) it checks:

* **no process left behind**: no process of any step (its command line names this run's
  marks file) is alive once every job ended;
* **no node stopped but by its fault**: a node that exited although no fault was put on
  it since its start, or for another reason than its faults give (``EXPECTED``), is a
  crash; self-fencing without a fault (a lease missed under load) is reported apart, as
  in the soak.

Prints one JSON line (figures and every violation found); exits 1 if there is one.
Usage: ``python -m bench.chaos [--jobs 400] [--faults 24] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/chaos.py`` too
    sys.path.insert(0, str(ROOT))

from bench import soak  # noqa: E402  (after the path fix above)
from tests import pgserver  # noqa: E402
from tests.cluster import CLUSTER_WORKFLOWS, Cluster  # noqa: E402

FAULTS = ("kill", "freeze", "terminate")
#: A step that ignores SIGTERM and outlives its timeout: only the SIGKILL after kill_grace
#: ends it. Its shell (whose command line names the marks file) lives as long as it does.
HANG = """
[workflows.hang]
steps = [ { name = "hang", action = "exec", timeout = 2, params = { argv = [
  "sh", "-c", "trap '' TERM; echo hang {tag} >> {out}.hang; while :; do sleep 1; done",
] } } ]
"""
TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND client_port = ANY(%s)"
)
#: Seconds a step's processes may take to go once every job ended (a SIGKILL in flight).
LEFTOVER_GRACE = 10.0


class Load(soak.Submitter):
    """The soak's submitter; every ``hang_every``-th job a hung step (no asset)."""

    def bodies(self, first: int, count: int) -> list[dict[str, Any]]:
        bodies = super().bodies(first, count)
        for i, body in zip(range(first, first + count), bodies, strict=True):
            if self.args.hang_every and i % self.args.hang_every == self.args.hang_every - 1:
                body["workflow"], body["assets"] = "hang", []
        return bodies


#: What a node that exited after each fault may say (its last error, or its watchdog's
#: line: ``soak.exit_reason``); an exit after a fault for another reason is a crash.
EXPECTED = {
    "freeze": soak.SELF_FENCING,
    "terminate": (*soak.SELF_FENCING, "lost the database", "terminat", "connection"),
}


class Chaos:
    """The faults, and which nodes had some since their last start (an exit for the reason
    one of them gives is its doing; any other exit is a crash)."""

    def __init__(self, cluster: Cluster, args: argparse.Namespace) -> None:
        self.cluster, self.args = cluster, args
        self.rng = random.Random(args.seed)
        # node -> its faults since its start: a node that has not yet noticed one fault (the
        # server ended its sessions) can be given another, and may exit for either.
        self.faulted: dict[str, list[str]] = {}
        self.faults: list[dict[str, Any]] = []
        self.exits: list[dict[str, Any]] = []

    def run(self, log: Any) -> None:
        for _ in range(self.args.faults):
            time.sleep(self.rng.uniform(0.5, 3.0))  # the chaos's pace is the workload itself
            self.restart_exited()
            live = [n for n, d in self.cluster.daemons.items() if d.alive]
            name = self.rng.choice(live or sorted(self.cluster.daemons))
            fault = self.rng.choice(FAULTS)
            record: dict[str, Any] = {"node": name, "fault": fault, "at": round(time.time(), 3)}
            self.faulted.setdefault(name, []).append(fault)
            getattr(self, fault)(name, record)
            self.faults.append(record)
            log(f"  {fault} {name} ({len(self.faults)}/{self.args.faults})")
        self.restart_exited()

    def restart_exited(self) -> None:
        for name in [n for n, d in self.cluster.daemons.items() if not d.alive]:
            why = soak.exit_reason(self.cluster, name)
            faults = self.faulted.get(name, [])
            expected = any(k in why for f in faults for k in EXPECTED.get(f, ()))
            after = "+".join(faults) or None
            self.exits.append({"node": name, "why": why, "after": after, "expected": expected})
            self.start(name, self.exits[-1])

    def start(self, name: str, record: dict[str, Any]) -> None:
        soak.restart(self.cluster, name, record)
        self.faulted.pop(name, None)

    def kill(self, name: str, record: dict[str, Any]) -> None:
        self.cluster.kill(name)
        time.sleep(self.rng.uniform(0.0, 2.0))
        self.start(name, record)

    def freeze(self, name: str, record: dict[str, Any]) -> None:
        held = self.rng.uniform(0.2, 1.5) * self.args.lease
        record["seconds"] = round(held, 2)
        self.cluster.freeze(name)
        time.sleep(held)  # the freeze's length is the fault itself
        self.cluster.thaw(name)

    def terminate(self, name: str, record: dict[str, Any]) -> None:
        ports = self.cluster.relays[name].upstream_ports()
        ended = self.cluster.sql(TERMINATE, (ports,))
        record["sessions"] = int(ended[0][0]) if ended else 0


def left_behind(out: Path) -> list[str]:
    """Step processes (their command line names the run's marks file) still alive
    LEFTOVER_GRACE s after every job ended."""
    deadline = time.monotonic() + LEFTOVER_GRACE
    while (found := _alive(out)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def _alive(out: Path) -> list[str]:
    found = []
    mark = str(out).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmdline:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command[:160]}")
    return found


def _run(cluster: Cluster, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    out = cluster.base / "marks"
    names = [chr(ord("a") + i) for i in range(args.nodes)]
    cluster.start(*names, lease=args.lease, workers=args.workers, proxied=True)
    sub = Load(cluster, args, out)
    t0 = time.time()
    sub.start()
    chaos = Chaos(cluster, args)
    chaos.run(log)
    sub.join()
    states = soak.settle(cluster, args.settle_s)
    # A node given its fault last (the server ended its sessions) may exit only after the
    # faults are over: its exit is classified, and the node restarted, like any other.
    chaos.restart_exited()
    crashed = [e for e in chaos.exits if not e["expected"]]
    report = soak.check(cluster, sub, states, out, args.step_s, crashed)
    report["left_behind"] = left_behind(out)[:20]
    report["restarts_failed"] = [r for r in chaos.faults + chaos.exits if "restart_failed" in r]
    report["faults"] = {f: sum(1 for r in chaos.faults if r["fault"] == f) for f in FAULTS}
    by_fault = [e for e in chaos.exits if e["expected"]]
    report["exits_by_fault"] = [f"{e['after']}: {e['why'][:100]}" for e in by_fault]
    report |= {"states": states, "seconds": round(time.time() - t0)}
    report["acked"], report["unknown"] = len(sub.acked), len(sub.unknown)
    report["submit_errors"] = sub.errors[:10]
    hung = (out.parent / f"{out.name}.hang").read_text().splitlines() if args.hang_every else []
    report["info"]["hung_steps_started"] = len(hung)
    return report


VIOLATIONS = (*soak.VIOLATIONS, "left_behind")


def chaos(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    with pgserver.server() as server, pgserver.fresh_database(server) as url:
        base = Path(os.environ.get("TMPDIR", "/tmp")) / f"jobd-chaos-{os.getpid()}"
        cluster = Cluster(url, base, workflows=CLUSTER_WORKFLOWS + soak.WORKFLOW + HANG)
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--assets", type=int, default=10)
    p.add_argument("--step-s", type=float, default=0.5)
    p.add_argument("--hang-every", type=int, default=25, help="0: no hung steps")
    p.add_argument("--faults", type=int, default=24)
    p.add_argument("--seconds", type=float, default=40.0, help="submissions spread over")
    p.add_argument("--lease", type=float, default=4.0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--settle-s", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the nodes' files")
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = chaos(args, log) | {"bench": "chaos", "args": vars(args), "load": os.getloadavg()}
    print(json.dumps(report))
    if any(report[k] for k in VIOLATIONS):
        sys.exit(1)


if __name__ == "__main__":
    main()
