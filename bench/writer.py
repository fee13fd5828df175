"""The SQLite writer process's own cost per job, by recorded batches replayed.

* ``record FILE``: N no-op jobs submitted in batches of B (``Engine.submit_many``, what
  ``POST /v1/batch/jobs`` calls; due at once) to an engine in this process (real store,
  real writer process, W workers) until every one has completed; every byte the store
  writes to its writer process is kept in FILE (the frames as sent, whatever their
  format: a recording replays on the code that made it).
* ``replay FILE``: FILE's frames applied to a new database by ``sqlwriter.apply_batches``
  in this process, as the writer process applies them (each frame unpickled, ``--group``
  frames per transaction, each answer pickled). The grouping is fixed here, where a live
  writer's depends on timing: two replays of one recording do the same work. Prints the
  CPU per job (``--synchronous off`` leaves out the fsyncs' system time).
* ``measure``: records N and 2N jobs, replays each under ``valgrind --tool=callgrind``
  and prints the writer's **instructions per job**: (Ir(2N) - Ir(N)) / N, so that
  start-up and imports drop out. Instructions do not change with the machine's load;
  seconds do.
* ``--lone`` (with ``record`` or ``measure``): lone submissions instead, what an httpx
  client one request at a time sends: N stored no-op jobs (due tomorrow) submitted one
  at a time (``Engine.submit``, each awaited), so each is a frame of its own, replayed
  one frame a transaction (``--group 1``). ``measure --lone`` prints the instructions
  per submission and the **WAL frames per commit** (a replay with the automatic
  checkpoint off, the WAL's growth divided by a frame's size: every page a commit
  writes). Either replay ends as the writer process does at the end of its input
  (``sqlwriter.index_leftovers``: what is left unindexed is indexed then), so the work
  a tree puts off is counted too.

Usage: ``python -m bench.writer measure [--lone] [--jobs N] [--batch B] [--workers W]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SQLITE = ROOT / "jobd" / "store" / "sqlite"


def _sqlwriter() -> ModuleType:
    """The writer module by its file, as the writer process runs it (standard library
    only: no import of the jobd package, whose imports would dwarf a short replay)."""
    spec = importlib.util.spec_from_file_location("sqlwriter", SQLITE / "sqlwriter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _record(n: int, batch: int, workers: int) -> bytes:
    import anyio

    from bench.engine import PLUGINS, Counter, bench_config
    from jobd.core.models import JobSpec
    from jobd.engine import Engine
    from jobd.plugin.host import PluginHost
    from jobd.store.sqlite.store import open_store

    sent: list[bytes] = []
    plugins = PluginHost([PLUGINS], builtin=False, entry_points=False)
    plugins.load()
    with tempfile.TemporaryDirectory(prefix="jobd-bw-") as tmp:
        state = Path(tmp)
        async with open_store(state / "jobd.db", synchronous="full") as store:
            write = store._writer._write

            def keep(data: bytes | bytearray | memoryview) -> None:
                sent.append(bytes(data))
                write(data)

            store._writer._write = keep
            engine = Engine(bench_config(state, workers, max(4 * batch, 1000)), store, plugins)
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                counter = Counter(n)
                engine.add_listener(counter)
                for _ in range(n // batch):
                    await engine.submit_many([JobSpec(workflow="noop")] * batch, actor="bench")
                await counter.finished.wait()
                await store.flush()
                tg.cancel_scope.cancel()
    return b"".join(sent)


async def _record_lone(n: int, batch: int, workers: int) -> bytes:
    """N stored jobs (due tomorrow: nothing runs) submitted one at a time: a frame each."""
    import anyio

    from bench.engine import PLUGINS, bench_config
    from jobd.core.models import JobSpec
    from jobd.engine import Engine
    from jobd.plugin.host import PluginHost
    from jobd.store.sqlite.store import open_store

    sent: list[bytes] = []
    plugins = PluginHost([PLUGINS], builtin=False, entry_points=False)
    plugins.load()
    tomorrow = time.time() + 86_400
    with tempfile.TemporaryDirectory(prefix="jobd-bw-") as tmp:
        state = Path(tmp)
        async with open_store(state / "jobd.db", synchronous="full") as store:
            write = store._writer._write

            def keep(data: bytes | bytearray | memoryview) -> None:
                sent.append(bytes(data))
                write(data)

            engine = Engine(bench_config(state, workers, 1000), store, plugins)
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                await store.flush()
                store._writer._write = keep  # from here: the submissions alone
                for _ in range(n):
                    await engine.submit(JobSpec(workflow="noop", start_at=tomorrow))
                store._writer._write = write
                tg.cancel_scope.cancel()
    return b"".join(sent)


def _frames(data: bytes, header: Any) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        (size,) = header.unpack_from(data, at)
        out.append(data[at + header.size : at + header.size + size])
        at += header.size + size
    return out


#: A WAL frame: its 24-byte header and a page (the store's page size, SQLite's default).
WAL_FRAME = 24 + 4096
#: The WAL file's own header.
WAL_HEADER = 32


def replay(
    path: Path, group: int, synchronous: str, wal: bool = False, alone: bool = False
) -> dict[str, Any]:
    """Apply the recording at ``path`` to a new database, ``group`` frames a transaction,
    then end as the writer does at the end of its input. With ``wal``, the automatic
    checkpoint is off and the pages each commit wrote are counted off the WAL's size.
    ``alone``: this process is the replay's own (``replay`` run as a command), so SQLite
    is configured as the writer process configures it (``sqlwriter.unshared``)."""
    w = _sqlwriter()
    if alone and hasattr(w, "unshared"):
        w.unshared()
    frames = _frames(path.read_bytes(), w.HEADER)
    folder = Path(tempfile.mkdtemp(prefix="jobd-bw-"))
    try:
        db = str(folder / "jobd.db")
        # The newest migration's number: the version the store opens its database at.
        version = max(int(m.stem.split("-")[1]) for m in (SQLITE / "sql").glob("migrate-*.sql"))
        conn = w.connect(db, synchronous)
        w.migrate(conn, db, str(SQLITE / "sql" / "schema.sql"), version)
        if wal:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        pages: list[int] = []
        c0 = time.process_time()
        for start in range(0, len(frames), group):
            batches = [pickle.loads(f) for f in frames[start : start + group]]
            b"".join(w.encode_frame(reply) for reply in w.apply_batches(conn, batches))
            if wal:
                pages.append(_wal_frames(db))
        w.index_leftovers(conn)
        cpu = time.process_time() - c0
        jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        out = {"jobs": jobs, "frames": len(frames), "cpu_us_per_job": round(cpu / jobs * 1e6, 1)}
        if wal:
            out["wal"] = _wal_figures(pages, _wal_frames(db))
        conn.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _wal_frames(db: str) -> int:
    size = os.path.getsize(f"{db}-wal")
    return 0 if size == 0 else (size - WAL_HEADER) // WAL_FRAME


def _wal_figures(after_each: list[int], at_end: int) -> dict[str, Any]:
    """Pages per commit: the mean over the replay's commits (the end's indexing counted in),
    the median, and the most one commit wrote."""
    each = [b - a for a, b in zip([0, *after_each], after_each, strict=False)]
    each.sort()
    return {
        "commits": len(each),
        "total": at_end,
        "per_commit": round(at_end / len(each), 2),
        "median": each[len(each) // 2],
        "max": each[-1],
    }


def _callgrind(path: Path, group: int, folder: Path) -> int:
    out = folder / f"{path.name}.callgrind"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    cmd += ["-m", "bench.writer", "replay", str(path), "--group", str(group)]
    cmd += ["--synchronous", "off"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    for line in out.read_text().splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def measure(n: int, batch: int, workers: int, group: int, lone: bool = False) -> dict[str, Any]:
    from bench.engine import run

    record = _record_lone if lone else _record
    folder = Path(tempfile.mkdtemp(prefix="jobd-bw-"))
    try:
        small, big = folder / f"n{n}", folder / f"n{2 * n}"
        small.write_bytes(run(record, n, batch, workers))
        big.write_bytes(run(record, 2 * n, batch, workers))
        out: dict[str, Any] = {"jobs": [n, 2 * n], "batch": batch, "group": group, "lone": lone}
        out["replay_full"] = [replay(p, group, "full", wal=lone) for p in (small, big)]
        if shutil.which("valgrind"):
            ir = [_callgrind(p, group, folder) for p in (small, big)]
            out["ir"] = ir
            out["ir_per_job"] = round((ir[1] - ir[0]) / n)
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("what", choices=("record", "replay", "measure"))
    p.add_argument("file", nargs="?", type=Path)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--group", type=int, default=8, help="frames per replayed transaction")
    p.add_argument("--synchronous", default="full")
    p.add_argument("--lone", action="store_true", help="lone submissions, a frame a commit")
    p.add_argument("--wal", action="store_true", help="replay: count the WAL frames")
    args = p.parse_args(argv)
    group = 1 if args.lone else args.group
    if args.what == "record":
        from bench.engine import run

        record = _record_lone if args.lone else _record
        args.file.write_bytes(run(record, args.jobs, args.batch, args.workers))
        return
    if args.what == "replay":
        out = replay(args.file, group, args.synchronous, wal=args.wal, alone=True)
    else:
        out = measure(args.jobs, args.batch, args.workers, group, lone=args.lone)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"bench": "writer", **out}))


if __name__ == "__main__":
    main()
