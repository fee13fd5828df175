"""The writer process's SQLite without mutexes or memory statistics (``sqlwriter.unshared``),
in a process of its own as the writer runs: still the same writes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from jobd.store.sqlite import SCHEMA_VERSION, sqlwriter

SCRIPT = textwrap.dedent(
    """
    import ctypes, importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("sqlwriter", sys.argv[1])
    w = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w)
    applied = w.unshared() if sys.argv[4] == "1" else False
    lib = ctypes.CDLL(w._sqlite3_file())
    lib.sqlite3_db_mutex.restype = ctypes.c_void_p
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    db = sys.argv[2]
    conn = w.connect(db, "full")
    w.migrate(conn, db, sys.argv[3], int(sys.argv[5]))
    insert = "INSERT INTO job_log (job_id, at, step, level, message) VALUES (?,?,?,?,?)"
    units = [([(insert, (i, 0.0, None, "info", f"m{i}"))], set(), [], False) for i in range(50)]
    replies = w.apply_batches(conn, [units[:25], units[25:]])
    rows = conn.execute("SELECT job_id, message FROM job_log ORDER BY seq").fetchall()
    used = lib.sqlite3_memory_used()  # counted only with the memory statistics on
    conn.close()
    handle = ctypes.c_void_p()
    lib.sqlite3_open(b":memory:", ctypes.byref(handle))
    mutex = lib.sqlite3_db_mutex(handle)  # NULL unless serialized (the library's default)
    lib.sqlite3_close(handle)
    print(json.dumps({
        "applied": applied,
        "mutex": bool(mutex),
        "memory_used": used,
        "replies": replies,
        "rows": rows,
    }))
    """
)


def _run(tmp_path: Path, name: str, unshared: bool) -> dict[str, object]:
    schema = Path(sqlwriter.__file__).parent / "sql" / "schema.sql"
    argv = [sys.executable, "-I", "-S", "-c", SCRIPT, sqlwriter.__file__, str(tmp_path / name)]
    argv += [str(schema), "1" if unshared else "0", str(SCHEMA_VERSION)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    found: dict[str, object] = json.loads(out.stdout)
    return found


def test_the_writer_s_sqlite_has_no_mutexes_and_writes_the_same(tmp_path: Path) -> None:
    unshared, default = _run(tmp_path, "a.db", True), _run(tmp_path, "b.db", False)
    assert unshared["applied"] is True
    assert unshared["mutex"] is False and default["mutex"] is True
    assert unshared["memory_used"] == 0 and isinstance(default["memory_used"], int)
    assert default["memory_used"] > 0
    assert unshared["replies"] == default["replies"] == [["ok", [None] * 25]] * 2
    assert unshared["rows"] == default["rows"] == [[i, f"m{i}"] for i in range(50)]
