"""The PostgreSQL server's instructions per job, counted by callgrind on a replay of the
writer's own statements (wall clock and ``/proc`` CPU cannot tell 10 % on a shared 2-core
machine; instruction counts do not see the other sessions' load).

Two commands:

``capture``
    runs ``bench.pg``'s jobd engine (one node, in this process) on a fresh database of the
    shared server and records every statement the store's writer sends (each batch's
    ``jobd_apply*`` call, with its parameters written in as literals) to a file, one
    statement a line: N no-op jobs, plain or each locking 1 of ``--assets`` assets.
``replay``
    makes a private PostgreSQL cluster (``initdb`` in a temporary directory), migrates
    fresh databases with the ``jobd`` of ``--tree`` (its ``sql/`` files: the schema under
    test), then feeds each capture to a single-user backend (``postgres --single``, so the
    whole server side of the run is one traced process, ``fsync = off``) under ``valgrind
    --tool=callgrind``, and prints the instructions per job: (total − an empty replay's
    total) / N. The same capture replayed on two schemas is an A/B of the schema alone.

Usage::

    python -m bench.pgreplay capture --jobs 1000 --assets 10 --out locked.sql
    python -m bench.pgreplay replay --tree /path/to/checkout locked.sql plain.sql
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path("/usr/lib/postgresql/15/bin")
PORT = 5499
#: The writer's idle probe: timing, not work of the run.
SKIP = ("SELECT 1",)


# ------------------------------------------------------------------ capture
def header(node: str) -> list[str]:
    """A capture's first lines: the writer's session as the node, the node joined (epoch 1
    on a fresh database, the run's own; a lease that does not run out in the replay)."""
    return [
        f"SELECT set_config('jobd.node', '{node}', false)",
        f"SELECT jobd_node_join('{node}', '{{}}', 64, 1000, 1e9, NULL, 0, NULL)",
    ]


def capture(url: str, jobs: int, assets: int, out: Path) -> dict[str, Any]:
    """Run the engine on ``url`` recording the writer's statements into ``out``."""
    import anyio
    import psycopg

    from bench.engine import LOOP_OPTIONS
    from bench.pg import jobd_run
    from jobd.store.postgres.store import PostgresStore

    sent: list[tuple[str, Any]] = []
    node: list[str] = []
    original = PostgresStore._transaction

    async def recording(self: Any, units: Any) -> Any:
        conn = self._conn
        if not node:
            row = await (await conn.execute("SELECT current_setting('jobd.node', true)")).fetchone()
            node.append(row[0] or "")
            real = conn.execute

            async def execute(query: Any, params: Any = None, **kw: Any) -> Any:
                if query not in SKIP:
                    sent.append((query, params))
                return await real(query, params, **kw)

            conn.execute = execute
        return await original(self, units)

    PostgresStore._transaction = recording  # type: ignore[method-assign]
    try:
        run = anyio.run(lambda: jobd_run(url, jobs, assets=assets), backend_options=LOOP_OPTIONS)
    finally:
        PostgresStore._transaction = original  # type: ignore[method-assign]
    with psycopg.connect(url, autocommit=True) as conn, out.open("w") as f:
        cur = psycopg.ClientCursor(conn)
        for line in header(node[0]):
            f.write(line + "\n")
        for query, params in sent:
            text = cur.mogrify(query, params)
            if "\n" in text:  # one statement a line: the backend's input format
                text = " ".join(text.splitlines())
            f.write(text + "\n")
    return {"jobs": jobs, "assets": assets, "statements": len(sent), "run": run}


# ------------------------------------------------------------------ replay
def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL's programs refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def cluster() -> Iterator[Path]:
    """A private cluster's data directory, in a temporary directory the server user owns."""
    tmp = Path(tempfile.mkdtemp(prefix="jobd-pgreplay-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        data = tmp / "data"
        subprocess.run(
            _as_postgres([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
            check=True,
            capture_output=True,
        )
        yield data
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(data: Path, tree: Path, names: list[str]) -> None:
    """Databases ``names``, each migrated by ``tree``'s jobd (a copy of one migrated once)."""
    sock = data.parent
    opts = f"-k {sock} -p {PORT} -c listen_addresses='' -c fsync=off"
    ctl = [str(BIN / "pg_ctl"), "-D", str(data), "-w", "-o", opts, "-l", str(sock / "log")]
    subprocess.run(_as_postgres([*ctl, "start"]), check=True, capture_output=True)
    try:
        url = f"postgresql://postgres@/template_jobd?host={sock}&port={PORT}"
        psql = [str(BIN / "psql"), "-h", str(sock), "-p", str(PORT), "-U", "postgres", "-qc"]
        subprocess.run([*psql, "CREATE DATABASE template_jobd"], check=True)
        code = (
            "import anyio, sys\n"
            "from jobd.store.postgres import open_store\n"
            "async def main():\n"
            "    async with open_store(sys.argv[1]):\n"
            "        pass\n"
            "anyio.run(main)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, "-c", code, url], check=True, env=env)
        for name in names:
            subprocess.run([*psql, f"CREATE DATABASE {name} TEMPLATE template_jobd"], check=True)
    finally:
        subprocess.run(_as_postgres([*ctl, "-m", "fast", "stop"]), check=True, capture_output=True)


def traced(data: Path, database: str, statements: Path) -> tuple[int, int]:
    """Instructions of a single-user backend fed ``statements``, and the errors it printed."""
    out = data.parent / f"cg-{database}"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    argv += [str(BIN / "postgres"), "--single", "-D", str(data), "-c", "fsync=off", database]
    with statements.open() as f:
        done = subprocess.run(_as_postgres(argv), stdin=f, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the backend failed: {done.stderr[-2000:]}")
    errors = done.stderr.count("ERROR:") + done.stdout.count("ERROR:")
    if errors:
        first = (done.stderr + done.stdout).split("ERROR:")[1][:500]
        print(f"{database}: {errors} errors, the first: {first}", file=sys.stderr)
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1]), errors
    raise RuntimeError(f"no totals in {out}")


def replay(tree: Path, captures: list[Path], keep: Path | None = None) -> dict[str, Any]:
    """Instructions per job of each capture on ``tree``'s schema; ``keep``: a directory to
    copy callgrind's files to (``callgrind_annotate`` them for where the cost is)."""
    result: dict[str, Any] = {"tree": str(tree), "captures": {}}
    with cluster() as data:
        names = ["r_empty"] + [f"r_{i}" for i in range(len(captures))]
        prepare(data, tree, names)
        empty = data.parent / "empty.sql"
        empty.write_text("".join(f"{line}\n" for line in captures[0].read_text().splitlines()[:2]))
        base, _ = traced(data, "r_empty", empty)
        for i, path in enumerate(captures):
            jobs = _jobs(path)
            total, errors = traced(data, f"r_{i}", path)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(data.parent / f"cg-r_{i}", keep / f"callgrind.{path.stem}")
            result["captures"][path.name] = {
                "jobs": jobs,
                "instructions": total,
                "per_job": round((total - base) / jobs),
                "errors": errors,
            }
        result["empty"] = base
    return result


def _jobs(path: Path) -> int:
    """The jobs of a capture (``capture`` writes them beside it, in ``<file>.json``)."""
    meta = path.with_suffix(path.suffix + ".json")
    return int(json.loads(meta.read_text())["jobs"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("capture")
    c.add_argument("--jobs", type=int, default=1000)
    c.add_argument("--assets", type=int, default=10, help="each job locks 1 of these (0: none)")
    c.add_argument("--server", help="a postgresql:// URL of a role that may create databases")
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("replay")
    r.add_argument("--tree", type=Path, default=Path.cwd())
    r.add_argument("--keep", type=Path, help="a directory for callgrind's output files")
    r.add_argument("captures", type=Path, nargs="+")
    args = p.parse_args()
    if args.command == "capture":
        import structlog

        from bench.pg import fresh_database, load, server_url

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
        with fresh_database(server_url(args.server), "jobd_bench_capture") as url:
            meta = {"load_start": load(), **capture(url, args.jobs, args.assets, args.out)}
        meta["load_end"] = load()
        args.out.with_suffix(args.out.suffix + ".json").write_text(json.dumps(meta))
        print(json.dumps(meta))
    else:
        captures = [c.resolve() for c in args.captures]
        print(json.dumps(replay(args.tree.resolve(), captures, args.keep)))


if __name__ == "__main__":
    main()
