"""Every SQL statement of the SQLite store, named, in one place (the schema: ``sql/``).

Statements whose shape varies are built here too, once per shape, so that a
batch sent to the writer process carries each distinct string once (pickle
memoises repeated objects). ``?`` lists are capped by SQLite's variable limit:
callers pass at most :data:`MAX_IDS` ids to an ``IN`` statement.

The writer process (``sqlwriter.py``) runs on the standard library alone, without
this package, so its transaction control (``BEGIN IMMEDIATE``, savepoints, the
migration's ``PRAGMA user_version``) stays in that file.
"""

from __future__ import annotations

from functools import cache

#: SQLite caps the ``?`` in one statement; reads by id are split in chunks of this size ...
MAX_IDS = 500
#: ... or of this one, under SQLite's 32,766 bound parameters (one-statement reads).
MAX_WIDE_IDS = 30000

# ------------------------------------------------------------------ connection
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = {synchronous}",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA busy_timeout = 30000",
)

#: A read of several statements that must agree (the reader's connection, autocommit).
BEGIN_READ = "BEGIN"
END_READ = "COMMIT"

# ------------------------------------------------------------------ columns
JOB_COLUMNS = (
    "id, state, spec, created_at, updated_at, error, progress, progress_message, due_at,"
    " run_started_at"
)
STEP_COLUMNS = (
    "job_id, idx, name, action, params, state, attempts, started_at, ended_at, outputs, "
    "error, timeout, retries, retry_backoff, isolation, pgid"
)
RESERVATION_COLUMNS = 'job_id, resource, start, "end", pool'

# ------------------------------------------------------------------ job writes
INSERT_JOB = (
    "INSERT INTO jobs (id, name, workflow, state, spec, priority, start_at, end_at, due_at,"
    " error, schedule, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _transition(error: bool, due_at: bool) -> str:
    sets = ["state = ?", "updated_at = ?", *(["error = ?"] * error), *(["due_at = ?"] * due_at)]
    return f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND state = ?"


#: The guarded UPDATE of a transition, by (sets error, sets due_at).
TRANSITION = {(e, d): _transition(e, d) for e in (False, True) for d in (False, True)}
INSERT_HISTORY = (
    "INSERT INTO history (job_id, at, from_state, to_state, cause, actor) VALUES (?,?,?,?,?,?)"
)
#: A set-based transition (``Store.transition_many``): the ids as one JSON array, read by
#: ``json_each`` (no bound-parameter limit, one statement string whatever the count), each
#: statement guarded by the from-state. History and release come first, while the jobs are
#: still in it; the UPDATE last, answering the ids it moved.
_IN_IDS = "id IN (SELECT value FROM json_each(?)) AND state = ?"
HISTORY_MANY = (
    "INSERT INTO history (job_id, at, from_state, to_state, cause, actor)"
    f" SELECT id, ?, ?, ?, ?, ? FROM jobs WHERE {_IN_IDS}"
)
#: The release probes the reservations by each id first (most jobs hold none) and reads a
#: job's state only for those found: 3-6x faster than selecting the moving jobs first.
RELEASE_MANY = (
    "DELETE FROM reservations WHERE job_id IN (SELECT value FROM json_each(?))"
    " AND (SELECT state FROM jobs WHERE id = job_id) = ?"
)
TRANSITION_MANY = f"UPDATE jobs SET state = ?, updated_at = ? WHERE {_IN_IDS} RETURNING id"
REDEFINE_JOB = (
    "UPDATE jobs SET spec = ?, name = ?, priority = ?, start_at = ?, end_at = ?,"
    " due_at = ?, error = NULL WHERE id = ?"
)
DELETE_JOB_GUARDED = "DELETE FROM jobs WHERE id = ? AND state = ?"
DELETE_STEPS = "DELETE FROM steps WHERE job_id = ?"
DELETE_RESERVATIONS = "DELETE FROM reservations WHERE job_id = ?"
DELETE_LOG = "DELETE FROM job_log WHERE job_id = ?"
SET_ERROR = "UPDATE jobs SET error = ?, updated_at = ? WHERE id = ?"
SET_ERROR_IF_CLEAR = "UPDATE jobs SET error = ?, updated_at = ? WHERE id = ? AND error IS NULL"
SET_RUN_STARTED = "UPDATE jobs SET run_started_at = ? WHERE id = ?"
SET_PROGRESS = "UPDATE jobs SET progress = ?, progress_message = ? WHERE id = ?"

# ------------------------------------------------------------------ step writes
INSERT_STEP = f"INSERT INTO steps ({STEP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
RECORD_STEP = (
    "UPDATE steps SET state = ?, attempts = ?, started_at = ?, ended_at = ?,"
    " outputs = ?, error = ?, pgid = ? WHERE job_id = ? AND idx = ?"
)
SET_STEP_PGID = "UPDATE steps SET pgid = ? WHERE job_id = ? AND idx = ?"
RESET_STEP = (
    "UPDATE steps SET state = 'queued', attempts = 0, started_at = NULL,"
    " ended_at = NULL, outputs = NULL, error = NULL, pgid = NULL"
    " WHERE job_id = ? AND idx = ?"
)
REQUEUE_STEP = (
    "UPDATE steps SET state = 'queued', error = ?, pgid = NULL WHERE job_id = ? AND idx = ?"
)
FAIL_STEP = (
    "UPDATE steps SET state = 'failed', error = ?, ended_at = ?,"
    " pgid = NULL WHERE job_id = ? AND idx = ?"
)

# ------------------------------------------------------------------ other writes
INSERT_RESERVATION = f"INSERT INTO reservations ({RESERVATION_COLUMNS}) VALUES (?,?,?,?,?)"
INSERT_LOG = "INSERT INTO job_log (job_id, at, step, level, message) VALUES (?,?,?,?,?)"
ENSURE_SCHEDULE = "INSERT OR IGNORE INTO schedules (name) VALUES (?)"
SCHEDULE_FIRED = "UPDATE schedules SET last_fire_at = ?, last_job_id = ? WHERE name = ?"
SCHEDULE_PAUSED = "UPDATE schedules SET paused_at = ? WHERE name = ?"
SCHEDULE_CLOCK = "UPDATE schedules SET last_fire_at = ? WHERE name = ?"
#: A firing that did not run, counted by kind.
SCHEDULE_NOT_RUN = {
    kind: f"UPDATE schedules SET {kind} = {kind} + 1,"
    " last_fire_at = max(coalesce(last_fire_at, 0), ?) WHERE name = ?"
    for kind in ("missed", "skipped")
}
INSERT_SCHEDULE_EVENT = (
    "INSERT INTO schedule_events (schedule, at, fire_time, kind, job_id, reason)"
    " VALUES (?,?,?,?,?,?)"
)

# ------------------------------------------------------------------ reads
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM steps WHERE job_id = ? ORDER BY idx"
SELECT_RESERVATIONS = (
    f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE job_id = ? ORDER BY start, resource"
)
SELECT_HISTORY = (
    "SELECT at, from_state, to_state, cause, actor FROM history WHERE job_id = ? ORDER BY id"
)
SELECT_LOG = (
    "SELECT seq, at, step, level, message FROM job_log WHERE job_id = ? AND seq > ?"
    " ORDER BY seq LIMIT ?"
)


def marks(n: int) -> str:
    return ",".join("?" * n)


@cache
def select_jobs_by_id(n: int) -> str:
    return f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({marks(n)})"


@cache
def select_steps_by_job(n: int) -> str:
    return f"SELECT {STEP_COLUMNS} FROM steps WHERE job_id IN ({marks(n)}) ORDER BY job_id, idx"


@cache
def select_reservations_by_job(n: int) -> str:
    return (
        f"SELECT {RESERVATION_COLUMNS} FROM reservations"
        f" WHERE job_id IN ({marks(n)}) ORDER BY start, resource"
    )


def select_windows_by_id(n: int) -> str:
    return f"SELECT id, name, workflow, state, start_at, end_at FROM jobs WHERE id IN ({marks(n)})"


@cache
def select_names_by_id(n: int) -> str:
    return f"SELECT id, name, workflow, state FROM jobs WHERE id IN ({marks(n)})"


#: The job columns on the alias ``j`` of the filtered reads (:mod:`.filters`).
FILTER_JOB_COLUMNS = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))


def ids_in_states(n: int) -> str:
    return f"SELECT id FROM jobs WHERE state IN ({marks(n)}) ORDER BY due_at, id"


DUE_IDS = (
    "SELECT id FROM jobs INDEXED BY jobs_due WHERE state = 'confirmed'"
    " AND due_at <= ? ORDER BY due_at, id LIMIT ?"
)
_UNCONFIRMED = (
    "jobs INDEXED BY jobs_unconfirmed WHERE state IN ('draft', "
    "'tentative') AND error IS NULL AND start_at IS NOT NULL"
)
UNCONFIRMED_STARTED = f"SELECT id FROM {_UNCONFIRMED} AND start_at <= ? ORDER BY start_at"
NEXT_DUE = (
    "SELECT min(due_at) FROM jobs INDEXED BY jobs_due WHERE state = 'confirmed' AND due_at > ?"
)
NEXT_UNCONFIRMED = f"SELECT min(start_at) FROM {_UNCONFIRMED} AND start_at > ?"
IDS_WITH_ERROR = "SELECT id FROM jobs WHERE error IS NOT NULL AND json_extract(error, '$.code') = ?"
PENDING_IDS = (
    "SELECT id FROM jobs INDEXED BY jobs_pending WHERE state = 'pending'"
    " ORDER BY priority DESC, due_at, id LIMIT ?"
)
COUNT_STATE = "SELECT count(*) FROM jobs WHERE state = ?"
MAX_JOB_ID = (
    "SELECT max(m) FROM (SELECT max(id) AS m FROM jobs UNION ALL SELECT max(job_id) FROM history)"
)
RESERVATIONS_BY_SPAN = (
    f"SELECT {RESERVATION_COLUMNS} FROM reservations"
    " INDEXED BY reservations_by_span ORDER BY resource, start"
)
RESERVATIONS_BY_JOB = (
    "SELECT job_id, resource, start FROM reservations"
    " INDEXED BY reservations_by_job ORDER BY job_id"
)
SCHEDULE_ROWS = "SELECT name, last_fire_at, last_job_id, missed, skipped, paused_at FROM schedules"
SCHEDULE_EVENTS = (
    "SELECT at, fire_time, kind, job_id, reason FROM schedule_events WHERE schedule = ?"
    " ORDER BY id DESC LIMIT ?"
)
