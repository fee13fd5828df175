"""A tree's writer, wrapped by bench/commits.py: each transaction logged (frames, units, times)."""

from __future__ import annotations

import json
import os
import sys
import time

real = os.environ["PROBE_REAL_DIR"]
sys.path.insert(0, real)
import sqlwriter  # noqa: E402

_apply = sqlwriter.apply_batches
_read = sqlwriter.read_frames
log = []  # (t_read_done, t_commit_done, frames, units)
_last = [0.0]


def read_frames(fd, buf, *idle):
    r = _read(fd, buf, *idle)
    _last[0] = time.perf_counter()
    return r


def apply_batches(conn, batches):
    t0 = _last[0]
    out = _apply(conn, batches)
    log.append((t0, time.perf_counter(), len(batches), sum(len(b) for b in batches)))
    return out


sqlwriter.apply_batches = apply_batches
sqlwriter.read_frames = read_frames
try:
    rc = sqlwriter.main(sys.argv[1:])
finally:
    path = os.environ.get("PROBE_OUT")
    if path:
        with open(f"{path}.{os.getpid()}", "w") as f:
            json.dump(log, f)
sys.exit(rc)
