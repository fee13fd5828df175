"""Every SQL statement of the PostgreSQL store, named, in one place.

The reads are here (placeholders are psycopg's ``%s``); the writes are in the
schema's function ``jobd_apply`` (``sql/schema.sql``), one named statement per
``op`` of :mod:`.units`, so that a whole group-commit batch is one statement:
one round trip, plans cached by PL/pgSQL, and no per-statement cost in the
daemon. A unit's guard (the UPDATE of a transition, the DELETE of a delete) goes
first in its unit; ``jobd_apply`` skips the rest of a unit whose guard matched
no row and returns the indexes of those units.
"""

from __future__ import annotations

import hashlib

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
#: Taken while the schema is checked and created: nodes starting together create it once.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(7316021)"
#: Held by the writer's session while a node uses the database, keyed by the node's name:
#: two daemons with the same ``[daemon] node`` would take each other's jobs for their own.
#: The server frees it when the session ends, also when the daemon is killed.
NODE_LOCK = "SELECT pg_try_advisory_lock(7316022, hashtext(%s))"
#: Gives node %s's name back at a clean close, so that the next run may take it at once
#: (the lock would otherwise last until the closed session's backend has exited).
NODE_UNLOCK = "SELECT pg_advisory_unlock(7316022, hashtext(%s))"
#: Ends the sessions of node %s's earlier run that the server still holds although that
#: run is over: the node's lease ran out (or it was taken over, or it left) and the session
#: dates from before its last renewal; a session of the run is one named after the node
#: (``application_name`` %s, :func:`.opening.named`) or one holding its name (NODE_LOCK).
#: Such sessions outlive their daemon when its host lost the network (the server hears of
#: the death only by TCP keepalive, hours later), and the one holding the name would refuse
#: every restart of the node until then. A session of a run with a valid lease, or newer
#: than its last renewal (another daemon starting under the name), is left alone. The
#: number of sessions ended; fails where there is nothing it may do (no ``nodes`` yet, or
#: a role that may not end them).
NODE_EVICT = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))
  FROM nodes n
  JOIN pg_stat_activity a
    ON a.datname = current_database() AND a.pid <> pg_backend_pid()
   AND extract(epoch FROM a.backend_start) <= n.renewed_at
 WHERE n.name = %s AND NOT (n.state = 'up' AND n.renewed_at + n.lease_s > jobd_now())
   AND (a.application_name = %s
        OR EXISTS (SELECT FROM pg_locks l
                    WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
                      AND l.classid = 7316022 AND l.objsubid = 2
                      AND l.objid = (hashtext(n.name)::bigint & 4294967295)::oid
                      AND l.database = (SELECT oid FROM pg_database
                                         WHERE datname = current_database())))
"""
ANALYZE = "ANALYZE"
#: The idle writer's check that its connection still works.
PROBE = "SELECT 1"
HAS_SCHEMA = "SELECT to_regclass('jobd_meta') IS NOT NULL"
SELECT_VERSION = "SELECT value FROM jobd_meta WHERE key = 'schema_version'"
INSERT_VERSION = "INSERT INTO jobd_meta (key, value) VALUES ('schema_version', %s)"
UPDATE_VERSION = "UPDATE jobd_meta SET value = %s WHERE key = 'schema_version'"

# ------------------------------------------------------------------ writes
#: Every write: one call per group-commit batch of ``jobd_apply`` (``sql/schema.sql``), which
#: holds the write statements themselves, each named by its ``op`` (:mod:`.units`).
APPLY = "SELECT jobd_apply(%s::jsonb)"
#: A batch of the hot path grouped by statement (``sql/migrate-6.sql``, :mod:`.bulk`).
APPLY_BULK = "SELECT jobd_apply_bulk(%s::jsonb)"
#: A batch with asset-lock statements: their assets' advisory locks first, in key order
#: (``sql/migrate-6.sql``), then ``jobd_apply``; the assets, jobs and nodes they touch.
APPLY_LOCKED = "SELECT jobd_apply_locked(%s::jsonb, %s::text[], %s::bigint[], %s::text[])"
#: The same in two parts (``sql/migrate-13.sql``, :func:`.bulk.split`): the units that may go
#: ahead, grouped, and how many; then the others in order; the same assets, jobs and nodes.
APPLY_SPLIT = (
    "SELECT jobd_apply_split(%s::jsonb, %s, %s::jsonb, %s::text[], %s::bigint[], %s::text[])"
)
#: The same with the units of requests parted (``sql/migrate-16.sql``, :func:`.bulk.divide`):
#: per unit of the second part, the index in the first of the unit it depends on (-1: none),
#: skipped when that one's guard failed.
APPLY_SPLIT_DEPS = (
    "SELECT jobd_apply_split(%s::jsonb, %s, %s::jsonb, %s::integer[], %s::text[], %s::bigint[],"
    " %s::text[])"
)

#: A set-wise transition (``Store.transition_many``, :mod:`.many`): every job of ``ids``
#: still in ``frm`` moved, only those (the claim trigger skips the rows of a job another
#: node holds: not returned, no history, no release), their history rows in id order, and
#: with ``{release}`` = :data:`RELEASE_MOVED` their reservations dropped; the ids moved.
#: ``due_at = due_at``: the due trigger (``sql/migrate-15.sql``) hears of a move into
#: confirmed or pending only from a statement that names ``due_at``.
TRANSITION_MANY = (
    "WITH moved AS (UPDATE jobs SET state = %(to)s, updated_at = %(at)s, due_at = due_at"
    " WHERE id = ANY(%(ids)s::bigint[]) AND state = %(frm)s RETURNING id),"
    " history_rows AS (INSERT INTO history (job_id, at, from_state, to_state, cause, actor)"
    " SELECT id, %(at)s, %(frm)s, %(to)s, %(cause)s, %(actor)s FROM moved ORDER BY id)"
    "{release} SELECT id FROM moved"
)
RELEASE_MOVED = ", released AS (DELETE FROM reservations WHERE job_id IN (SELECT id FROM moved))"


# ------------------------------------------------------------------ asset locks
def lock_channel(node: str) -> str:
    """The channel of node ``node``'s lock notifications: the schema's
    ``jobd_lock_channel`` (``sql/migrate-22.sql``), ``jobd_locks_`` and 16 hex digits of the
    md5 of its name (a channel name has at most 63 bytes; a node's name may be longer)."""
    digest = hashlib.md5(node.encode(), usedforsecurity=False)  # a name, not a secret
    return "jobd_locks_" + digest.hexdigest()[:16]


def listen_locks(node: str) -> str:
    """LISTEN to node ``node``'s lock notifications."""
    return f'LISTEN "{lock_channel(node)}"'  # hex digits: nothing to escape


LOCK_ROWS = (
    "SELECT la.asset, la.job_id, la.exclusive, la.held, r.node, r.since, r.granted_at"
    " FROM lock_assets la JOIN lock_requests r USING (job_id) ORDER BY la.asset, la.seq"
)
NODE_LOCKS = "SELECT job_id, granted_at IS NOT NULL FROM lock_requests WHERE node = %s ORDER BY seq"
#: The starts of this node's requests that stand: the job ``running`` as this node (one
#: whose run recovery interrupted since is only granted: its node writes ``running``).
NODE_STARTS = (
    "SELECT r.job_id, r.started_at, r.start_step, r.start_attempts FROM lock_requests r"
    " JOIN jobs j ON j.id = r.job_id AND j.state = 'running' AND j.node = r.node"
    " WHERE r.node = %s AND r.started_at IS NOT NULL ORDER BY r.seq"
)
RELEASE_NODE_LOCKS = "SELECT jobd_locks_release_node(%s)"


# ------------------------------------------------------------------ cluster rules
#: The configuration's resources and capacities (``sql/migrate-6.sql``: the slots).
#: Self-conflicting: two nodes starting at once rewrite the table one after the other (a
#: DELETE + INSERT of each would otherwise race into a duplicate key).
LOCK_RESOURCES = "LOCK TABLE jobd_resources IN SHARE ROW EXCLUSIVE MODE"
CLEAR_RESOURCES = "DELETE FROM jobd_resources"
INSERT_RESOURCE = "INSERT INTO jobd_resources (name, capacity) VALUES (%s, %s)"
#: Other nodes' bookings, as ``<writer's backend pid> <job id>``.
LISTEN_BOOKINGS = "LISTEN jobd_bookings"

# ------------------------------------------------------------------ the cluster's news
#: Payloads sent on one channel in one round trip, in the array's order (a function scan
#: yields its rows in order, and nothing here sorts them). See :mod:`.news`.
PUBLISH = "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"
#: The node holding each job of a list that a node holds (``jobs.node``, set by the claim).
HOLDERS = (
    "SELECT id, node FROM jobs WHERE id = ANY(%s::bigint[]) AND node IS NOT NULL"
    " AND state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')"
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
#: The first of a block of fresh job ids (``sql/migrate-2.sql``).
TAKE_IDS = "SELECT jobd_take_ids(%s)"
COUNT_STATE = "SELECT count(*) FROM jobs WHERE state = %s"
MAX_JOB_ID = "SELECT greatest((SELECT max(id) FROM jobs), (SELECT max(job_id) FROM history))"
RESERVATIONS_BY_SPAN = f"SELECT {RESERVATION_COLUMNS} FROM reservations ORDER BY resource, start"
RESERVATIONS_BY_JOB = "SELECT job_id, resource, start FROM reservations ORDER BY job_id"
SCHEDULE_ROWS = "SELECT name, last_fire_at, last_job_id, missed, skipped, paused_at FROM schedules"
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
#: ``job_names_by_hour``'s bucket of a job on ``job_names n`` (``sql/migrate-20.sql`` writes
#: the same expression: the planner uses the index only for this text), as
#: :func:`.hours.hour_of` computes it; ``n.at_time`` is the job's ``coalesce(start_at,
#: created_at)`` (:data:`FILTER_TIME`), kept there since schema 20.
HOUR = "floor(n.at_time / 3600)::bigint"
#: :data:`FILTER_TIME` on ``job_names n``.
NAMES_TIME = "n.at_time"
#: Each hour holding jobs in ``low``..``high``, newest hour first (one index probe each: the
#: recursive step jumps to the next hour in ``job_names_by_hour``), with the hour's first id
#: below ``cursor`` (one more probe; NULL when none). Each probe orders by the index's
#: columns, so that no other index can serve it (:func:`.hours.keyed` says why).
HOURS_NEWEST_FIRST = (
    f"WITH RECURSIVE hrs(h) AS (SELECT (SELECT {HOUR} FROM job_names n WHERE {HOUR} <= %(high)s"
    f" AND {HOUR} >= %(low)s ORDER BY {HOUR} DESC LIMIT 1) UNION ALL SELECT (SELECT {HOUR}"
    f" FROM job_names n WHERE {HOUR} < hrs.h AND {HOUR} >= %(low)s ORDER BY {HOUR} DESC LIMIT 1)"
    " FROM hrs WHERE hrs.h IS NOT NULL)"
    f" SELECT h, (SELECT n.job_id FROM job_names n WHERE ({HOUR}, n.job_id) < (hrs.h, %(cursor)s)"
    f" AND {HOUR} >= hrs.h ORDER BY {HOUR} DESC, n.job_id DESC LIMIT 1) FROM hrs"
    " WHERE h IS NOT NULL LIMIT %(most)s"
)
#: Each hour of ``low``..``high`` (an open end: the first or last hour holding jobs), newest
#: first, ``span`` + 1 hours at most, with the hour's first id below ``cursor`` (NULL for an
#: hour without one), and the range's width in hours first: one probe an hour, against
#: two for the step from hour to hour of HOURS_NEWEST_FIRST, for a range whose hours are
#: most of them populated (a busy installation's are).
_SPAN = (
    f"WITH b AS (SELECT coalesce(%(low)s::bigint, (SELECT {HOUR} FROM job_names n ORDER BY {HOUR}"
    f" ASC LIMIT 1)) AS lo, coalesce(%(high)s::bigint, (SELECT {HOUR} FROM job_names n ORDER BY"
    f" {HOUR} DESC LIMIT 1)) AS hi) SELECT b.hi - b.lo, s.h, (SELECT n.job_id FROM job_names n"
    " WHERE"
)
HOURS_SPAN_NEWEST_FIRST = (
    f"{_SPAN} ({HOUR}, n.job_id) < (s.h, %(cursor)s) AND {HOUR} >= s.h ORDER BY {HOUR} DESC,"
    " n.job_id DESC LIMIT 1) FROM b, generate_series(b.hi, greatest(b.lo, b.hi - %(span)s), -1)"
    " AS s(h)"
)
HOURS_SPAN_OLDEST_FIRST = (
    f"{_SPAN} ({HOUR}, n.job_id) > (s.h, %(cursor)s) AND {HOUR} <= s.h ORDER BY {HOUR} ASC,"
    " n.job_id ASC LIMIT 1) FROM b, generate_series(b.lo, least(b.hi, b.lo + %(span)s)) AS s(h)"
)
#: The same, oldest hour first, with each hour's first id above ``cursor``.
HOURS_OLDEST_FIRST = (
    f"WITH RECURSIVE hrs(h) AS (SELECT (SELECT {HOUR} FROM job_names n WHERE {HOUR} >= %(low)s"
    f" AND {HOUR} <= %(high)s ORDER BY {HOUR} ASC LIMIT 1) UNION ALL SELECT (SELECT {HOUR}"
    f" FROM job_names n WHERE {HOUR} > hrs.h AND {HOUR} <= %(high)s ORDER BY {HOUR} ASC LIMIT 1)"
    " FROM hrs WHERE hrs.h IS NOT NULL)"
    f" SELECT h, (SELECT n.job_id FROM job_names n WHERE ({HOUR}, n.job_id) > (hrs.h, %(cursor)s)"
    f" AND {HOUR} <= hrs.h ORDER BY {HOUR} ASC, n.job_id ASC LIMIT 1) FROM hrs"
    " WHERE h IS NOT NULL LIMIT %(most)s"
)

# ------------------------------------------------------------------ nodes (sql/migrate-4.sql)
#: The writer's session is node ``%s``: claims and the ``jobd_due`` payloads name it.
SET_NODE = "SELECT set_config('jobd.node', %s, false)"
#: Added to a batch's APPLY* of a joined node: its fencing token is checked first (the WHERE
#: runs before the select list), in the batch's own transaction.
FENCE = " WHERE jobd_fence(%s, %s)"
#: The fencing token checked on its own, first in a transaction (:mod:`.many`).
FENCE_ALONE = "SELECT jobd_fence(%s, %s)"
#: The SQLSTATE of jobd_fence's refusal.
FENCED_SQLSTATE = "JF001"
NODE_JOIN = "SELECT jobd_node_join(%s, %s, %s, %s, %s, %s, %s, %s)"
NODE_RENEW = "SELECT jobd_node_renew(%s, %s)"
NODE_LEAVE = "SELECT jobd_node_leave(%s, %s)"
NODE_TAKEOVER = "SELECT dead_node, job_ids FROM jobd_node_takeover(%s, %s)"
NEXT_EXPIRY = (
    "SELECT min(renewed_at + lease_s) - jobd_now() FROM nodes WHERE state = 'up' AND name <> %s"
)
NODE_ROWS = (
    "SELECT n.name, n.tags, CASE WHEN n.state = 'up' AND n.renewed_at + n.lease_s <= jobd_now()"
    " THEN 'lost' ELSE n.state END, n.renewed_at, n.lease_s, n.epoch, n.started_at, n.workers,"
    " n.run_queue_size, n.api, n.pid, n.host, ARRAY(SELECT j.id FROM jobs j WHERE j.node ="
    " n.name AND j.state IN ('running', 'cancel-requested') ORDER BY j.id) FROM nodes n"
    " ORDER BY n.name"
)
#: Recovery's input on a node of a cluster: the active jobs this node holds.
IDS_IN_STATES_OF_NODE = (
    "SELECT id FROM jobs WHERE state = ANY(%s) AND node = %s ORDER BY due_at, id"
)
