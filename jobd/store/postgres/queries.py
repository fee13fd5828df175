"""Every SQL statement of the PostgreSQL store, named, in one place (the schema: ``sql/``).

Placeholders are psycopg's ``%s``. A unit of work may carry one *guard* (the
guarded UPDATE or DELETE of a transition or a delete): it goes first, and it
records in the transaction-local setting ``jobd.ok`` whether it matched a row.
The statements after it in the same unit are the *conditional* forms below
(:func:`conditional`): they do nothing unless ``jobd.ok`` is set, so that a
batch of many units runs as one pipeline, in one round trip, with no savepoint
and no error when a guard fails (see :mod:`.store`).

Parameters of INSERTs are cast explicitly: a conditional INSERT is an
``INSERT ... SELECT`` whose values the server cannot type from the target columns.
"""

from __future__ import annotations

from functools import cache

#: The condition a statement after a guard carries: the guard of its unit matched.
OK = "current_setting('jobd.ok', true) = 't'"

_F = "::double precision"
_I = "::bigint"
_T = "::text"


def _insert(table: str, columns: str, types: str) -> str:
    """``INSERT INTO table (columns) SELECT <cast values> WHERE {cond}``."""
    values = ", ".join(f"%s{t}" for t in types.split(","))
    return f"INSERT INTO {table} ({columns}) SELECT {values} WHERE {{cond}}"


@cache
def conditional(sql: str) -> str:
    """The form of ``sql`` that runs only when its unit's guard matched."""
    return sql.replace("{cond}", OK)


@cache
def plain(sql: str) -> str:
    """The form of ``sql`` outside a guarded unit."""
    return sql.replace(" WHERE {cond}", "").replace(" AND {cond}", "")


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

# ------------------------------------------------------------------ schema
SCHEMA_VERSION = 1
#: Taken while the schema is checked and created: nodes starting together create it once.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(7316021)"
HAS_SCHEMA = "SELECT to_regclass('jobd_meta') IS NOT NULL"
SELECT_VERSION = "SELECT value FROM jobd_meta WHERE key = 'schema_version'"
INSERT_VERSION = "INSERT INTO jobd_meta (key, value) VALUES ('schema_version', %s)"

# ------------------------------------------------------------------ guards
_G = (
    "WITH g AS ({}) SELECT set_config('jobd.ok',"
    " CASE WHEN EXISTS (SELECT FROM g) THEN 't' ELSE 'f' END, true)"
)


def _transition(error: bool, due_at: bool) -> str:
    sets = ["state = %s", "updated_at = %s", *(["error = %s"] * error), *(["due_at = %s"] * due_at)]
    update = f"UPDATE jobs SET {', '.join(sets)} WHERE id = %s AND state = %s RETURNING 1"
    return _G.format(update)


#: The guarded UPDATE of a transition, by (sets error, sets due_at): one row, 't' or 'f'.
TRANSITION = {(e, d): _transition(e, d) for e in (False, True) for d in (False, True)}
DELETE_JOB_GUARDED = _G.format("DELETE FROM jobs WHERE id = %s AND state = %s RETURNING 1")

# ------------------------------------------------------------------ job writes
INSERT_JOB = _insert(
    "jobs",
    "id, name, workflow, state, spec, priority, start_at, end_at, due_at, error, schedule,"
    " created_at, updated_at",
    f"{_I},{_T},{_T},{_T},{_T},::integer,{_F},{_F},{_F},{_T},{_T},{_F},{_F}",
)
INSERT_HISTORY = _insert(
    "history", "job_id, at, from_state, to_state, cause, actor", f"{_I},{_F},{_T},{_T},{_T},{_T}"
)
REDEFINE_JOB = (
    "UPDATE jobs SET spec = %s, name = %s, priority = %s, start_at = %s, end_at = %s,"
    " due_at = %s, error = NULL WHERE id = %s AND {cond}"
)
DELETE_STEPS = "DELETE FROM steps WHERE job_id = %s AND {cond}"
DELETE_RESERVATIONS = "DELETE FROM reservations WHERE job_id = %s AND {cond}"
DELETE_LOG = "DELETE FROM job_log WHERE job_id = %s AND {cond}"
SET_ERROR = "UPDATE jobs SET error = %s, updated_at = %s WHERE id = %s AND {cond}"
SET_ERROR_IF_CLEAR = (
    "UPDATE jobs SET error = %s, updated_at = %s WHERE id = %s AND error IS NULL AND {cond}"
)
SET_RUN_STARTED = "UPDATE jobs SET run_started_at = %s WHERE id = %s AND {cond}"
SET_PROGRESS = "UPDATE jobs SET progress = %s, progress_message = %s WHERE id = %s AND {cond}"

# ------------------------------------------------------------------ step writes
INSERT_STEP = _insert(
    "steps",
    STEP_COLUMNS,
    f"{_I},::integer,{_T},{_T},{_T},{_T},::integer,{_F},{_F},{_T},{_T},{_F},::integer,{_F},"
    f"{_T},::integer",
)
RECORD_STEP = (
    "UPDATE steps SET state = %s, attempts = %s, started_at = %s, ended_at = %s,"
    " outputs = %s, error = %s, pgid = %s WHERE job_id = %s AND idx = %s AND {cond}"
)
SET_STEP_PGID = "UPDATE steps SET pgid = %s WHERE job_id = %s AND idx = %s AND {cond}"
RESET_STEP = (
    "UPDATE steps SET state = 'queued', attempts = 0, started_at = NULL,"
    " ended_at = NULL, outputs = NULL, error = NULL, pgid = NULL"
    " WHERE job_id = %s AND idx = %s AND {cond}"
)
REQUEUE_STEP = (
    "UPDATE steps SET state = 'queued', error = %s, pgid = NULL"
    " WHERE job_id = %s AND idx = %s AND {cond}"
)
FAIL_STEP = (
    "UPDATE steps SET state = 'failed', error = %s, ended_at = %s,"
    " pgid = NULL WHERE job_id = %s AND idx = %s AND {cond}"
)

# ------------------------------------------------------------------ other writes
INSERT_RESERVATION = _insert("reservations", RESERVATION_COLUMNS, f"{_I},{_T},{_F},{_F},{_T}")
INSERT_LOG = _insert("job_log", "job_id, at, step, level, message", f"{_I},{_F},{_T},{_T},{_T}")
ENSURE_SCHEDULE = (
    "INSERT INTO schedules (name) SELECT %s::text WHERE {cond} ON CONFLICT (name) DO NOTHING"
)
SCHEDULE_FIRED = (
    "UPDATE schedules SET last_fire_at = %s, last_job_id = %s WHERE name = %s AND {cond}"
)
SCHEDULE_PAUSED = "UPDATE schedules SET paused_at = %s WHERE name = %s AND {cond}"
SCHEDULE_CLOCK = "UPDATE schedules SET last_fire_at = %s WHERE name = %s AND {cond}"
#: A firing that did not run, counted by kind.
SCHEDULE_NOT_RUN = {
    kind: f"UPDATE schedules SET {kind} = {kind} + 1,"
    " last_fire_at = greatest(coalesce(last_fire_at, 0), %s) WHERE name = %s AND {cond}"
    for kind in ("missed", "skipped")
}
INSERT_SCHEDULE_EVENT = _insert(
    "schedule_events",
    "schedule, at, fire_time, kind, job_id, reason",
    f"{_T},{_F},{_F},{_T},{_I},{_T}",
)

# ------------------------------------------------------------------ reads
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s"
SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM steps WHERE job_id = %s ORDER BY idx"
SELECT_RESERVATIONS = (
    f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE job_id = %s ORDER BY start, resource"
)
SELECT_HISTORY = (
    "SELECT at, from_state, to_state, cause, actor FROM history WHERE job_id = %s ORDER BY id"
)
SELECT_LOG = (
    "SELECT seq, at, step, level, message FROM job_log WHERE job_id = %s AND seq > %s"
    " ORDER BY seq LIMIT %s"
)
SELECT_JOBS_BY_ID = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY(%s)"
SELECT_STEPS_BY_JOB = (
    f"SELECT {STEP_COLUMNS} FROM steps WHERE job_id = ANY(%s) ORDER BY job_id, idx"
)
SELECT_RESERVATIONS_BY_JOB = (
    f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE job_id = ANY(%s)"
    " ORDER BY start, resource"
)
SELECT_WINDOWS_BY_ID = (
    "SELECT id, name, workflow, state, start_at, end_at FROM jobs WHERE id = ANY(%s)"
)
SELECT_NAMES_BY_ID = "SELECT id, name, workflow, state FROM jobs WHERE id = ANY(%s)"
IDS_IN_STATES = "SELECT id FROM jobs WHERE state = ANY(%s) ORDER BY due_at, id"
DUE_IDS = (
    "SELECT id FROM jobs WHERE state = 'confirmed' AND due_at <= %s ORDER BY due_at, id LIMIT %s"
)
_UNCONFIRMED = (
    "jobs WHERE state IN ('draft', 'tentative') AND error IS NULL AND start_at IS NOT NULL"
)
UNCONFIRMED_STARTED = f"SELECT id FROM {_UNCONFIRMED} AND start_at <= %s ORDER BY start_at"
NEXT_DUE = "SELECT min(due_at) FROM jobs WHERE state = 'confirmed' AND due_at > %s"
NEXT_UNCONFIRMED = f"SELECT min(start_at) FROM {_UNCONFIRMED} AND start_at > %s"
IDS_WITH_ERROR = (
    "SELECT id FROM jobs WHERE error IS NOT NULL AND (error::jsonb) ->> 'code' = %s ORDER BY id"
)
PENDING_IDS = (
    "SELECT id FROM jobs WHERE state = 'pending' ORDER BY priority DESC, due_at, id LIMIT %s"
)
COUNT_STATE = "SELECT count(*) FROM jobs WHERE state = %s"
MAX_JOB_ID = "SELECT greatest((SELECT max(id) FROM jobs), (SELECT max(job_id) FROM history))"
RESERVATIONS_BY_SPAN = f"SELECT {RESERVATION_COLUMNS} FROM reservations ORDER BY resource, start"
RESERVATIONS_BY_JOB = "SELECT job_id, resource, start FROM reservations ORDER BY job_id"
SCHEDULE_ROWS = (
    "SELECT name, last_fire_at, last_job_id, missed, skipped, paused_at FROM schedules"
)
SCHEDULE_EVENTS = (
    "SELECT at, fire_time, kind, job_id, reason FROM schedule_events WHERE schedule = %s"
    " ORDER BY id DESC LIMIT %s"
)

# ------------------------------------------------------------------ filtered lists
#: The job columns on the alias ``j`` of the filtered reads.
FILTER_JOB_COLUMNS = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))
FILTER_NAME = "coalesce(j.name, j.workflow || '-' || j.id)"
FILTER_TIME = "coalesce(j.start_at, j.created_at)"
FILTER_KEY = "EXISTS (SELECT FROM job_keys k WHERE k.kind = %s AND k.key = %s AND k.job_id = j.id)"
