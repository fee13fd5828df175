-- jobd schema, version 1. Applied by jobd.store when PRAGMA user_version < 1.
-- Times are POSIX seconds (REAL, UTC). States are the values of jobd.states.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    name             TEXT,
    workflow         TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    spec             TEXT    NOT NULL,      -- JSON: the JobSpec as submitted (or edited)
    priority         INTEGER NOT NULL DEFAULT 0,
    start_at         REAL,
    end_at           REAL,
    due_at           REAL,                  -- confirmed: when it becomes due; pending/queued: queue order
    error            TEXT,                  -- JSON {code, message, at} or NULL
    progress         REAL,
    progress_message TEXT,
    schedule         TEXT,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);
-- The earliest due confirmed job drives the one due timer: a million future jobs, one timer.
CREATE INDEX jobs_due ON jobs (due_at) WHERE state = 'confirmed';
-- Admission from pending: priority first (higher first), then due time.
CREATE INDEX jobs_pending ON jobs (priority DESC, due_at, id) WHERE state = 'pending';
-- Drafts and tentative jobs whose start passes get the not-confirmed overlay.
CREATE INDEX jobs_unconfirmed ON jobs (start_at)
    WHERE state IN ('draft', 'tentative') AND error IS NULL AND start_at IS NOT NULL;
CREATE INDEX jobs_by_schedule ON jobs (schedule, id) WHERE schedule IS NOT NULL;

CREATE TABLE steps (
    job_id        INTEGER NOT NULL,
    idx           INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    params        TEXT    NOT NULL,         -- JSON, already templated
    state         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    started_at    REAL,
    ended_at      REAL,
    outputs       TEXT,                     -- JSON or NULL
    error         TEXT,
    timeout       REAL,
    retries       INTEGER NOT NULL DEFAULT 0,
    retry_backoff REAL    NOT NULL DEFAULT 5,
    isolation     TEXT    NOT NULL DEFAULT 'inline',
    pgid          INTEGER,                  -- process group of a running subprocess, for recovery
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

-- Every transition, kept after the job is deleted (the audit trail).
CREATE TABLE history (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL,
    at         REAL    NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    cause      TEXT    NOT NULL,
    actor      TEXT    NOT NULL
);
CREATE INDEX history_by_job ON history (job_id, id);

CREATE TABLE reservations (
    job_id   INTEGER NOT NULL,
    resource TEXT    NOT NULL,
    start    REAL    NOT NULL,
    "end"    REAL    NOT NULL,
    pool     TEXT
);
CREATE INDEX reservations_by_job ON reservations (job_id);
CREATE INDEX reservations_by_span ON reservations (resource, start);

CREATE TABLE job_log (
    seq     INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL,
    at      REAL    NOT NULL,
    step    TEXT,
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL
);
CREATE INDEX job_log_by_job ON job_log (job_id, seq);

CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    last_fire_at REAL,
    last_job_id  INTEGER,
    missed       INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0
);

-- Firings that did not start a job (skipped by overlap, missed while down): never silently dropped.
CREATE TABLE schedule_events (
    id        INTEGER PRIMARY KEY,
    schedule  TEXT NOT NULL,
    at        REAL NOT NULL,
    fire_time REAL NOT NULL,
    kind      TEXT NOT NULL,              -- 'fired' | 'skipped' | 'missed'
    job_id    INTEGER,
    reason    TEXT
);
CREATE INDEX schedule_events_by_schedule ON schedule_events (schedule, id);
