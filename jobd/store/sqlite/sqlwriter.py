"""The database writer: a process of its own that applies the store's batches.

Why a process: the writer's work is Python too (binding every statement's
parameters, looping over units), and in the daemon's process it would take the
GIL from the event loop, so the two could never use both cores; they would
also run in turn, the loop idle while a batch commits and the writer idle
while the loop prepares the next. As a process it commits batch *k + 1* on
the second core while the loop wakes the callers of batch *k*.

Run as ``python -I -S sqlwriter.py DB SYNCHRONOUS SCHEMA VERSION [LOCK_WAIT]``: standard
library only, so it starts in a few tens of milliseconds. It speaks frames on
stdin/stdout (a 4-byte big-endian length, then a pickle, trusted: both ends
are this program):

- first it sends ``("ready", None)`` or ``("error", message)``;
- then it answers each batch ``[(statements, guarded), ...]`` it receives, in
  order, with ``("ok", results)`` (per unit: ``None``, ``("guard", sql)``,
  ``("error", message)``, or ``("rows", rows)`` when its last statement returns
  rows) or ``("failed", message)`` when the batch was rolled back as a whole.
  All the batches that arrived while it was busy are applied in ONE
  transaction (one fsync): the daemon sends batches as they fill up, and the
  writer groups them.

It exits at end of input: when the daemon closes the store, or when the daemon
dies (even by SIGKILL), after finishing the batch in hand, which is then either
committed whole or not at all. It holds an exclusive ``flock`` on
``DB-writer.lock`` while it lives, so the next writer (a restarted daemon)
starts only after the previous one has finished.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import sqlite3
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct("!I")
#: Seconds to wait for the previous writer's lock before giving up.
LOCK_WAIT = 30.0
#: The lock file, open for as long as the process lives.
_held: list[IO[str]] = []

Statement = tuple[str, Any]
#: One unit: its statements, and the indexes of those that must change a row.
UnitFrame = tuple[list[Statement], set[int]]


def read_frames(fd: int, buf: bytearray) -> list[Any] | None:
    """Every complete frame that has arrived (waiting for at least one); None at end of
    input. Frames that came in together are applied together: that is the group commit."""
    while True:
        frames, used = [], 0
        while len(buf) - used >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, used)
            if len(buf) - used - HEADER.size < size:
                break
            start = used + HEADER.size
            frames.append(pickle.loads(buf[start : start + size]))
            used = start + size
        del buf[:used]
        if frames:
            return frames
        data = os.read(fd, 1 << 20)
        if not data:
            return None
        buf += data


def encode_frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def apply_batches(conn: sqlite3.Connection, batches: list[list[UnitFrame]]) -> list[Any]:
    """One transaction for all ``batches``: the reply to each. A failing unit rolls back only
    itself when it can (a guard), everything when it cannot (an SQL error halfway through a
    unit): then every batch is answered ``("failed", message)``."""
    results: list[Any] = []
    try:
        conn.execute("BEGIN IMMEDIATE")  # fails on a lock held past busy_timeout, for one
    except sqlite3.Error as exc:
        return [("failed", str(exc))] * len(batches)
    try:
        for units in batches:
            results.append(
                ("ok", [_apply_unit(conn, statements, guarded) for statements, guarded in units])
            )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        return [("failed", str(exc))] * len(batches)
    except BaseException:
        _rollback(conn)
        raise
    return results


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # a failed COMMIT (I/O error, disk full) may have ended it
        conn.execute("ROLLBACK")


def _apply_unit(conn: sqlite3.Connection, statements: list[Statement], guarded: set[int]) -> Any:
    """The unit's reply: None, ``("guard", sql)``, ``("error", message)``, or ``("rows",
    rows)`` when its last statement returns rows (``RETURNING``: a set-based transition
    answers the ids it moved)."""
    cur = None
    if not guarded or guarded == {0}:
        # The common shapes need no savepoint: a guard, if any, is the first statement, so
        # when it matches no row nothing of the unit has been applied yet.
        for i, (sql, params) in enumerate(statements):
            cur = conn.execute(sql, params)
            if i == 0 and guarded and cur.rowcount == 0:
                return ("guard", sql)
        return None if cur is None or cur.description is None else ("rows", cur.fetchall())
    conn.execute("SAVEPOINT unit")
    try:
        for i, (sql, params) in enumerate(statements):
            cur = conn.execute(sql, params)
            if i in guarded and cur.rowcount == 0:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                return ("guard", sql)
        rows = None if cur is None or cur.description is None else cur.fetchall()
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK TO unit")
        conn.execute("RELEASE unit")
        return ("error", str(exc))
    conn.execute("RELEASE unit")
    return None if rows is None else ("rows", rows)


def lock_writer(path: str, wait: float = LOCK_WAIT) -> None:
    """Hold ``DB-writer.lock`` for the life of this process, waiting up to ``wait`` seconds
    for a previous writer (of a daemon killed a moment ago) to finish its last batch."""
    lock = open(f"{path}-writer.lock", "a")  # noqa: SIM115 (held until the process ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _held.append(lock)
        return
    except BlockingIOError:
        pass

    def expired(signum: int, frame: object) -> None:
        raise OSError(f"another writer has held {lock.name} for {wait:g} s")

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, wait)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    _held.append(lock)


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, cached_statements=256)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def migrate(conn: sqlite3.Connection, path: str, schema_file: str, version: int) -> None:
    """Bring the database to ``version``: ``schema.sql`` for a new one (version 1), then
    each ``migrate-N.sql`` next to it in turn, each in its own transaction."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > version:
        raise ValueError(
            f"{path} has schema version {current}, newer than this jobd "
            f"({version}); upgrade jobd or restore a backup"
        )
    folder = os.path.dirname(schema_file)
    for step in range(max(current, 0) + 1, version + 1):
        script = schema_file if step == 1 else os.path.join(folder, f"migrate-{step}.sql")
        with open(script, encoding="utf-8") as f:
            sql = f.read()
        conn.executescript(f"BEGIN; {sql}; PRAGMA user_version = {step}; COMMIT;")


def serve(conn: sqlite3.Connection, inp: int, out: IO[bytes]) -> None:
    buf = bytearray()
    while (batches := read_frames(inp, buf)) is not None:
        out.write(b"".join(encode_frame(reply) for reply in apply_batches(conn, batches)))
        out.flush()


def main(argv: list[str]) -> int:
    path, synchronous, schema_file, version = argv[:4]
    wait = float(argv[4]) if len(argv) > 4 else LOCK_WAIT
    inp, out = sys.stdin.fileno(), sys.stdout.buffer
    # The daemon decides when the writer ends (by closing its input), not a terminal's ^C
    # sent to the whole process group, nor a SIGTERM meant for the daemon.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        lock_writer(path, wait)
        conn = connect(path, synchronous)
        migrate(conn, path, schema_file, int(version))
    except (sqlite3.Error, OSError, ValueError) as exc:
        out.write(encode_frame(("error", f"cannot open {path}: {exc}")))
        out.flush()
        return 1
    out.write(encode_frame(("ready", None)))
    out.flush()
    try:
        serve(conn, inp, out)
    except BrokenPipeError:  # the daemon is gone: nothing left to answer
        return 0
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
