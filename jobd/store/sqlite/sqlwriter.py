"""The database writer: a process of its own that applies the store's batches.

Why a process: the writer's work is Python too (binding every statement's
parameters, looping over units), and in the daemon's process it would take the
GIL from the event loop, so the two could never use both cores; they would
also run in turn, the loop idle while a batch commits and the writer idle
while the loop prepares the next. As a process it commits batch *k + 1* on
the second core while the loop wakes the callers of batch *k*.

Run as ``python -I -S sqlwriter.py DB SYNCHRONOUS SCHEMA VERSION [LOCK_WAIT [INDEX_AT
INDEX_IDLE]]``: standard
library only, so it starts in a few tens of milliseconds. It speaks frames on
stdin/stdout (a 4-byte big-endian length, then a pickle, trusted: both ends
are this program):

- first it sends ``("ready", None)`` or ``("error", message)``;
- then it answers each batch ``[(statements, guarded, appended, ordered), ...]``
  it receives, in order, with ``("ok", results)`` (per unit: ``None``,
  ``("guard", sql)``, ``("error", message)``, or ``("rows", rows)`` when its
  last statement returns rows) or ``("failed", message)`` when the batch was
  rolled back as a whole. All the batches that arrived while
  it was busy are applied in ONE transaction (one fsync): the daemon sends
  batches as they fill up, and the writer groups them. The work a transaction
  can do once rather than per unit is done at its end, before the COMMIT: the
  appended (history) rows in one ``executemany``; and once ``INDEX_AT`` new jobs'
  names are waiting, those names into the search index in one statement
  (:func:`index_names`). Names wait in ``job_names_stale`` (the search reads them
  there, ``filters.py``) until then, until the writer has been idle ``INDEX_IDLE``
  seconds, or until the end of its input, whichever comes first.

It exits at end of input: when the daemon closes the store, or when the daemon
dies (even by SIGKILL), after finishing the batch in hand, which is then either
committed whole or not at all, and indexing the names still waiting (a writer
killed itself leaves them waiting, committed: the next one indexes them first). It
holds an exclusive ``flock`` on ``DB-writer.lock`` while it lives, so the next writer
(a restarted daemon) starts only after the previous one has finished.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import select
import signal
import sqlite3
import struct
import sys
from collections.abc import Callable
from typing import IO, Any, cast

HEADER = struct.Struct("!I")
#: Seconds to wait for the previous writer's lock before giving up.
LOCK_WAIT = 30.0
#: The schema version that has ``job_names_stale`` (names indexed once per transaction).
NAMES_TABLE_SINCE = 5
#: New jobs' names are indexed once this many wait in ``job_names_stale`` (in the
#: transaction that makes them this many) ...
INDEX_AT = 1000
#: ... or once the writer has waited this long (seconds) for input with names waiting.
INDEX_IDLE = 0.5
#: The lock file, open for as long as the process lives.
_held: list[IO[str]] = []

Statement = tuple[str, Any]
#: One unit: its statements, the indexes of those that must change a row, its appended
#: rows (INSERTs into the history, which nothing else in the transaction reads, applied
#: after every unit, one ``executemany`` per statement, in order), and whether its own
#: statements write history (then the rows appended so far are written before it).
UnitFrame = tuple[list[Statement], set[int], list[Statement], bool]


class Names:
    """When the names of new jobs go into the search index: once ``at`` of them wait, or
    after ``idle`` seconds without input while some wait (:attr:`waiting`). Indexing per
    transaction cost a lone submission a third of its writer's instructions and 5 of its
    16 WAL pages (FTS5's segment, its index and its doc sizes, written at every commit)."""

    __slots__ = ("at", "idle", "waiting")

    def __init__(self, at: int = INDEX_AT, idle: float = INDEX_IDLE) -> None:
        self.at, self.idle = at, idle
        #: Whether names may be waiting since the last commit (then the idle timer runs).
        self.waiting = True

    def before_commit(self, cur: sqlite3.Cursor) -> bool:
        """Index the waiting names if they are ``at`` or more; whether some still wait."""
        if self.at > 1 and (count := cur.execute(_COUNT_STALE).fetchone()[0]) < self.at:
            return bool(count)
        index_names(cur)
        return False


def read_frames(fd: int, buf: bytearray, idle: float | None = None) -> list[Any] | None:
    """Every complete frame that has arrived (waiting for at least one); None at end of
    input; ``[]`` when none came in ``idle`` seconds (when given). Frames that came in
    together are applied together: that is the group commit."""
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
        if idle is not None and not select.select([fd], [], [], idle)[0]:
            return []
        data = os.read(fd, 1 << 20)
        if not data:
            return None
        buf += data


def encode_frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def apply_batches(
    conn: sqlite3.Connection, batches: list[list[UnitFrame]], names: Names | None = None
) -> list[Any]:
    """One transaction for all ``batches``: the reply to each. A failing unit rolls back only
    itself when it can (a guard), everything when it cannot (an SQL error halfway through a
    unit): then every batch is answered ``("failed", message)``.

    Before the COMMIT, in the same transaction: the appended rows of every unit that was
    applied (one ``executemany`` per statement, in the units' order), then, when ``names``
    (the writer's; by default :data:`INDEX_AT`) say so, the names of the jobs inserted
    (:func:`index_names`). What is acknowledged is durable and searchable together (its
    name in the index or in ``job_names_stale``), or not there at all."""
    if names is None:
        names = Names()
    results: list[Any] = []
    cur = conn.cursor()  # one for the transaction: a cursor per statement is an allocation
    try:
        cur.execute("BEGIN IMMEDIATE")  # fails on a lock held past busy_timeout, for one
    except sqlite3.Error as exc:
        return [("failed", str(exc))] * len(batches)
    appended: dict[str, list[Any]] = {}
    try:
        for units in batches:
            results.append(("ok", [_apply_unit(cur, unit, appended) for unit in units]))
        _write_appended(cur, appended)
        waiting = names.before_commit(cur)
        cur.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        return [("failed", str(exc))] * len(batches)
    except BaseException:
        _rollback(conn)
        raise
    names.waiting = waiting
    return results


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # a failed COMMIT (I/O error, disk full) may have ended it
        conn.execute("ROLLBACK")


def _apply_unit(cur: sqlite3.Cursor, unit: UnitFrame, appended: dict[str, list[Any]]) -> Any:
    """The unit's reply: None, ``("guard", sql)``, ``("error", message)``, or ``("rows",
    rows)`` when its last statement returns rows (``RETURNING``: a set-based transition
    answers the ids it moved). On success its appended rows are queued in ``appended`` (by
    statement) for the end of the transaction; a unit refused by a guard or an error
    queues nothing. A unit whose statements write history themselves (``ordered``) has
    the rows queued before it written first, so that a job's history keeps its order."""
    statements, guarded, rows, ordered = unit
    if ordered:
        _write_appended(cur, appended)
    if not statements:
        reply = None
    elif not guarded or guarded == {0}:
        # The common shapes need no savepoint: a guard, if any, is the first statement, so
        # when it matches no row nothing of the unit has been applied yet.
        for i, (sql, params) in enumerate(statements):
            cur.execute(sql, params)
            if i == 0 and guarded and cur.rowcount == 0:
                return ("guard", sql)
        reply = None if cur.description is None else ("rows", cur.fetchall())
    else:
        reply = _apply_saved(cur, statements, guarded)
        if reply is not None and reply[0] != "rows":
            return reply
    for sql, params in rows:
        if (same := appended.get(sql)) is None:
            appended[sql] = [params]
        else:
            same.append(params)
    return reply


def _write_appended(cur: sqlite3.Cursor, appended: dict[str, list[Any]]) -> None:
    for sql, rows in appended.items():
        cur.executemany(sql, rows)
    appended.clear()


def _apply_saved(cur: sqlite3.Cursor, statements: list[Statement], guarded: set[int]) -> Any:
    """A unit whose guards are not all first, under a savepoint that a refusal rolls back."""
    cur.execute("SAVEPOINT unit")
    try:
        for i, (sql, params) in enumerate(statements):
            cur.execute(sql, params)
            if i in guarded and cur.rowcount == 0:
                cur.execute("ROLLBACK TO unit")
                cur.execute("RELEASE unit")
                return ("guard", sql)
        found = None if cur.description is None else cur.fetchall()
    except sqlite3.Error as exc:
        cur.execute("ROLLBACK TO unit")
        cur.execute("RELEASE unit")
        return ("error", str(exc))
    cur.execute("RELEASE unit")
    return None if found is None else ("rows", found)


#: The jobs inserted since the names were last indexed (schema 5: ``migrate-5.sql``) ...
_ANY_STALE = "SELECT 1 FROM job_names_stale LIMIT 1"
_COUNT_STALE = "SELECT count(*) FROM job_names_stale"
#: ... their names as shown, into the trigram index, in one statement ...
_INDEX_STALE = (
    "INSERT INTO job_names (rowid, name)"
    " SELECT j.id, coalesce(j.name, j.workflow || '-' || j.id)"
    " FROM job_names_stale AS s CROSS JOIN jobs AS j ON j.id = s.id ORDER BY s.id"
)
#: ... and then none is stale.
_CLEAR_STALE = "DELETE FROM job_names_stale"


def index_names(cur: sqlite3.Cursor | sqlite3.Connection) -> None:
    """Put the names of the jobs inserted since the last call into the trigram index
    ``job_names``, inside the caller's transaction (the writer calls it before a COMMIT
    once enough wait, :class:`Names`; a bulk loader writing with its own connection calls
    it before its own).

    One statement for all of them: FTS5 writes its pending terms at every statement's
    savepoint, so a per-row trigger made one index segment per job. The name indexed is
    the job's current one (a job renamed or deleted since its insert is indexed as it is
    now, or not at all: see the triggers of ``migrate-5.sql``). Does nothing, and writes no
    page, when no job is waiting."""
    if cur.execute(_ANY_STALE).fetchone() is not None:
        cur.execute(_INDEX_STALE)
        cur.execute(_CLEAR_STALE)


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


#: ``sqlite3_config`` options (sqlite3.h): no mutexes at all; no memory statistics.
_CONFIG_SINGLETHREAD = 1
_CONFIG_MEMSTATUS = 9


def unshared() -> bool:
    """Configure SQLite in this process for one thread and one connection, before the
    first connection opens: no mutexes (``SQLITE_CONFIG_SINGLETHREAD``) and no memory
    statistics (``SQLITE_CONFIG_MEMSTATUS`` off). The library's default (serialized) locks
    a mutex on every allocation, free and page fetch, ~340 a job: 8 % of the writer's
    instructions. Only for a process that has no other thread using SQLite (the writer;
    the replay of ``bench/writer.py``); whether it was applied. Where the library cannot
    be reached or refuses (a build without mutexes, one already in use), nothing changes."""
    try:
        import ctypes

        lib = ctypes.CDLL(_sqlite3_file())
        if lib.sqlite3_shutdown() != 0:
            return False
        single = bool(lib.sqlite3_config(_CONFIG_SINGLETHREAD) == 0)
        lib.sqlite3_config(_CONFIG_MEMSTATUS, ctypes.c_int(0))
        return bool(single and lib.sqlite3_initialize() == 0)
    except (ImportError, OSError, AttributeError):
        return False


def _sqlite3_file() -> str:
    """The file of the ``_sqlite3`` extension: its symbols resolve to the very library the
    ``sqlite3`` module uses (linked in, or the shared one it loaded)."""
    import _sqlite3

    return str(_sqlite3.__file__)


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    # None binds as NULL either way, but only int, float, str and bytearray skip sqlite3's
    # adaptation: for None it looked up ``__adapt__`` on its protocol type, which raises
    # and formats an AttributeError every time (~2,000 instructions a parameter, ~20 a
    # job, 8 % of the writer). A registered adapter is found first; this one is C code
    # that returns None for None.
    sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))
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


def index_leftovers(conn: sqlite3.Connection) -> None:
    """Index, in a transaction of its own, the names waiting: at the start those a writer
    killed with names waiting left, or another connection (a bulk loader) committed without
    :func:`index_names`; when the writer has been idle; at the end of its input."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        index_names(conn)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def serve(conn: sqlite3.Connection, inp: int, out: IO[bytes], names: Names) -> None:
    buf = bytearray()
    while (batches := read_frames(inp, buf, names.idle if names.waiting else None)) is not None:
        if batches:
            replies = apply_batches(conn, batches, names)
            out.write(b"".join(encode_frame(reply) for reply in replies))
            out.flush()
        else:  # idle with names waiting
            _index_waiting(conn, names)
    if names.waiting:  # the end of input: a clean close, or the daemon gone
        _index_waiting(conn, names)


def _index_waiting(conn: sqlite3.Connection, names: Names) -> None:
    """The waiting names indexed now; if that fails (a lock held past the busy timeout),
    they stay findable in ``job_names_stale`` and are indexed at the next chance."""
    try:
        index_leftovers(conn)
    except sqlite3.Error as exc:
        print(f"jobd writer: names not indexed yet: {exc}", file=sys.stderr, flush=True)
        return
    names.waiting = False


def main(argv: list[str]) -> int:
    path, synchronous, schema_file, version = argv[:4]
    wait = float(argv[4]) if len(argv) > 4 else LOCK_WAIT
    names = Names(int(argv[5]), float(argv[6])) if len(argv) > 6 else Names()
    inp, out = sys.stdin.fileno(), sys.stdout.buffer
    # The daemon decides when the writer ends (by closing its input), not a terminal's ^C
    # sent to the whole process group, nor a SIGTERM meant for the daemon.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        lock_writer(path, wait)
        unshared()
        conn = connect(path, synchronous)
        migrate(conn, path, schema_file, int(version))
        if int(version) >= NAMES_TABLE_SINCE:
            index_leftovers(conn)
            names.waiting = False
    except (sqlite3.Error, OSError, ValueError) as exc:
        out.write(encode_frame(("error", f"cannot open {path}: {exc}")))
        out.flush()
        return 1
    out.write(encode_frame(("ready", None)))
    out.flush()
    try:
        serve(conn, inp, out, names)
    except BrokenPipeError:  # the daemon is gone: nothing left to answer
        return 0
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
