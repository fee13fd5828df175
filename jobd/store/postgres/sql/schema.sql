-- jobd schema for PostgreSQL, version 1 (the same records as the SQLite store's schema 2).
-- Applied by jobd.store.postgres under an advisory lock, so that nodes starting together
-- create it once. Times are POSIX seconds (double precision, UTC); states are the values of
-- jobd.states; spec, error, params and outputs are JSON text written by jobd.store.codec.

CREATE TABLE jobd_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE jobs (
    id               bigint PRIMARY KEY,
    name             text,
    workflow         text   NOT NULL,
    state            text   NOT NULL,
    spec             text   NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    start_at         double precision,
    end_at           double precision,
    due_at           double precision,
    error            text,
    progress         double precision,
    progress_message text,
    schedule         text,
    run_started_at   double precision,        -- the current run ran its start script then
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_due ON jobs (due_at, id) WHERE state = 'confirmed';
CREATE INDEX jobs_pending ON jobs (priority DESC, due_at, id) WHERE state = 'pending';
CREATE INDEX jobs_unconfirmed ON jobs (start_at)
    WHERE state IN ('draft', 'tentative') AND error IS NULL AND start_at IS NOT NULL;
CREATE INDEX jobs_by_schedule ON jobs (schedule, id) WHERE schedule IS NOT NULL;
CREATE INDEX jobs_by_workflow ON jobs (workflow, id);
CREATE INDEX jobs_by_time ON jobs ((coalesce(start_at, created_at)));
CREATE INDEX jobs_with_error ON jobs (((error::jsonb) ->> 'code')) WHERE error IS NOT NULL;

CREATE TABLE steps (
    job_id        bigint  NOT NULL,
    idx           integer NOT NULL,
    name          text    NOT NULL,
    action        text    NOT NULL,
    params        text    NOT NULL,
    state         text    NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    started_at    double precision,
    ended_at      double precision,
    outputs       text,
    error         text,
    timeout       double precision,
    retries       integer NOT NULL DEFAULT 0,
    retry_backoff double precision NOT NULL DEFAULT 5,
    isolation     text    NOT NULL DEFAULT 'inline',
    pgid          integer,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE history (
    id         bigserial PRIMARY KEY,
    job_id     bigint NOT NULL,
    at         double precision NOT NULL,
    from_state text,
    to_state   text,
    cause      text   NOT NULL,
    actor      text   NOT NULL
);
CREATE INDEX history_by_job ON history (job_id, id);

CREATE TABLE reservations (
    job_id   bigint NOT NULL,
    resource text   NOT NULL,
    start    double precision NOT NULL,
    "end"    double precision NOT NULL,
    pool     text
);
CREATE INDEX reservations_by_job ON reservations (job_id);
CREATE INDEX reservations_by_span ON reservations (resource, start);

CREATE TABLE job_log (
    seq     bigserial PRIMARY KEY,
    job_id  bigint NOT NULL,
    at      double precision NOT NULL,
    step    text,
    level   text   NOT NULL,
    message text   NOT NULL
);
CREATE INDEX job_log_by_job ON job_log (job_id, seq);

CREATE TABLE schedules (
    name         text PRIMARY KEY,
    last_fire_at double precision,
    last_job_id  bigint,
    missed       integer NOT NULL DEFAULT 0,
    skipped      integer NOT NULL DEFAULT 0,
    paused_at    double precision
);

CREATE TABLE schedule_events (
    id        bigserial PRIMARY KEY,
    schedule  text NOT NULL,
    at        double precision NOT NULL,
    fire_time double precision NOT NULL,
    kind      text NOT NULL,
    job_id    bigint,
    reason    text
);
CREATE INDEX schedule_events_by_schedule ON schedule_events (schedule, id);

-- The assets and resources of each job (the list filters' ?asset= and ?resource=), and every
-- resource a reservation was ever made on; kept by the triggers below.
CREATE TABLE job_keys (
    kind   text   NOT NULL,
    key    text   NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (kind, key, job_id)
);
CREATE INDEX job_keys_by_job ON job_keys (job_id);

CREATE FUNCTION jobd_job_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM job_keys WHERE job_id = OLD.id;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    INSERT INTO job_keys (kind, key, job_id)
        SELECT 'asset', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(NEW.spec::jsonb -> 'assets', '[]'))
        UNION SELECT 'asset', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(NEW.spec::jsonb -> 'shared_assets', '[]'))
        UNION SELECT 'resource', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(NEW.spec::jsonb -> 'resources', '[]'))
        UNION SELECT 'resource', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(NEW.spec::jsonb -> 'pools', '[]'))
        UNION SELECT 'resource', resource, job_id FROM reservations WHERE job_id = NEW.id
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
-- A new job without assets or resources has none of these keys in its spec (the codec leaves
-- empty lists out): the WHEN spares the trigger's cost on the hot path of a plain submit.
CREATE TRIGGER jobs_keys_insert AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.spec ~ '"(assets|shared_assets|resources|pools)"')
    EXECUTE FUNCTION jobd_job_keys();
CREATE TRIGGER jobs_keys AFTER DELETE OR UPDATE OF spec ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobd_job_keys();

CREATE FUNCTION jobd_reservation_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_keys (kind, key, job_id) VALUES ('resource', NEW.resource, NEW.job_id)
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER reservations_keys AFTER INSERT ON reservations
    FOR EACH ROW EXECUTE FUNCTION jobd_reservation_keys();

-- Every write of the store, applied by one call per group-commit batch (jobd.store.postgres.
-- store): ``batch`` is a JSON array of units, each an array of statements ``[op, arg, ...]``.
-- A unit whose first statement is a guard (``transition``, ``delete_job``) that matches no
-- row is skipped whole and its index returned; the others are applied. One statement for
-- the whole batch: one round trip, one plan cache (PL/pgSQL keeps the plans of these
-- statements), and no per-statement cost in the daemon.
CREATE FUNCTION jobd_apply(batch jsonb) RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    u jsonb;
    s jsonb;
    i integer := -1;
    failed integer[] := '{}';
BEGIN
    FOR u IN SELECT value FROM jsonb_array_elements(batch) LOOP
        i := i + 1;
        FOR s IN SELECT value FROM jsonb_array_elements(u) LOOP
            CASE s ->> 0
            WHEN 'transition' THEN
                UPDATE jobs SET state = s ->> 1, updated_at = (s ->> 2)::float8,
                    error = CASE WHEN (s ->> 3)::boolean THEN s ->> 4 ELSE error END,
                    due_at = CASE WHEN (s ->> 5)::boolean THEN (s ->> 6)::float8 ELSE due_at END
                 WHERE id = (s ->> 7)::bigint AND state = s ->> 8;
                IF NOT FOUND THEN failed := failed || i; EXIT; END IF;
            WHEN 'history' THEN
                INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
                VALUES ((s ->> 1)::bigint, (s ->> 2)::float8, s ->> 3, s ->> 4, s ->> 5, s ->> 6);
            WHEN 'record_step' THEN
                UPDATE steps SET state = s ->> 1, attempts = (s ->> 2)::integer,
                    started_at = (s ->> 3)::float8, ended_at = (s ->> 4)::float8,
                    outputs = s ->> 5, error = s ->> 6, pgid = (s ->> 7)::integer
                 WHERE job_id = (s ->> 8)::bigint AND idx = (s ->> 9)::integer;
            WHEN 'log' THEN
                INSERT INTO job_log (job_id, at, step, level, message)
                VALUES ((s ->> 1)::bigint, (s ->> 2)::float8, s ->> 3, s ->> 4, s ->> 5);
            WHEN 'insert_job' THEN
                INSERT INTO jobs (id, name, workflow, state, spec, priority, start_at, end_at,
                                  due_at, error, schedule, created_at, updated_at)
                VALUES ((s ->> 1)::bigint, s ->> 2, s ->> 3, s ->> 4, s ->> 5,
                        (s ->> 6)::integer, (s ->> 7)::float8, (s ->> 8)::float8,
                        (s ->> 9)::float8, s ->> 10, s ->> 11, (s ->> 12)::float8,
                        (s ->> 13)::float8);
            WHEN 'insert_step' THEN
                INSERT INTO steps (job_id, idx, name, action, params, state, attempts,
                                   started_at, ended_at, outputs, error, timeout, retries,
                                   retry_backoff, isolation, pgid)
                VALUES ((s ->> 1)::bigint, (s ->> 2)::integer, s ->> 3, s ->> 4, s ->> 5,
                        s ->> 6, (s ->> 7)::integer, (s ->> 8)::float8, (s ->> 9)::float8,
                        s ->> 10, s ->> 11, (s ->> 12)::float8, (s ->> 13)::integer,
                        (s ->> 14)::float8, s ->> 15, (s ->> 16)::integer);
            WHEN 'set_run_started' THEN
                UPDATE jobs SET run_started_at = (s ->> 1)::float8 WHERE id = (s ->> 2)::bigint;
            WHEN 'set_progress' THEN
                UPDATE jobs SET progress = (s ->> 1)::float8, progress_message = s ->> 2
                 WHERE id = (s ->> 3)::bigint;
            WHEN 'set_error' THEN
                UPDATE jobs SET error = s ->> 1, updated_at = (s ->> 2)::float8
                 WHERE id = (s ->> 3)::bigint;
            WHEN 'set_error_if_clear' THEN
                UPDATE jobs SET error = s ->> 1, updated_at = (s ->> 2)::float8
                 WHERE id = (s ->> 3)::bigint AND error IS NULL;
            WHEN 'set_step_pgid' THEN
                UPDATE steps SET pgid = (s ->> 1)::integer
                 WHERE job_id = (s ->> 2)::bigint AND idx = (s ->> 3)::integer;
            WHEN 'reset_step' THEN
                UPDATE steps SET state = 'queued', attempts = 0, started_at = NULL,
                    ended_at = NULL, outputs = NULL, error = NULL, pgid = NULL
                 WHERE job_id = (s ->> 1)::bigint AND idx = (s ->> 2)::integer;
            WHEN 'requeue_step' THEN
                UPDATE steps SET state = 'queued', error = s ->> 1, pgid = NULL
                 WHERE job_id = (s ->> 2)::bigint AND idx = (s ->> 3)::integer;
            WHEN 'fail_step' THEN
                UPDATE steps SET state = 'failed', error = s ->> 1, ended_at = (s ->> 2)::float8,
                    pgid = NULL
                 WHERE job_id = (s ->> 3)::bigint AND idx = (s ->> 4)::integer;
            WHEN 'reserve' THEN
                INSERT INTO reservations (job_id, resource, start, "end", pool)
                VALUES ((s ->> 1)::bigint, s ->> 2, (s ->> 3)::float8, (s ->> 4)::float8,
                        s ->> 5);
            WHEN 'release' THEN
                DELETE FROM reservations WHERE job_id = (s ->> 1)::bigint;
            WHEN 'redefine_job' THEN
                UPDATE jobs SET spec = s ->> 1, name = s ->> 2, priority = (s ->> 3)::integer,
                    start_at = (s ->> 4)::float8, end_at = (s ->> 5)::float8,
                    due_at = (s ->> 6)::float8, error = NULL
                 WHERE id = (s ->> 7)::bigint;
            WHEN 'delete_job' THEN
                DELETE FROM jobs WHERE id = (s ->> 1)::bigint AND state = s ->> 2;
                IF NOT FOUND THEN failed := failed || i; EXIT; END IF;
            WHEN 'delete_steps' THEN
                DELETE FROM steps WHERE job_id = (s ->> 1)::bigint;
            WHEN 'delete_log' THEN
                DELETE FROM job_log WHERE job_id = (s ->> 1)::bigint;
            WHEN 'ensure_schedule' THEN
                INSERT INTO schedules (name) VALUES (s ->> 1) ON CONFLICT (name) DO NOTHING;
            WHEN 'schedule_fired' THEN
                UPDATE schedules SET last_fire_at = (s ->> 1)::float8,
                    last_job_id = (s ->> 2)::bigint WHERE name = s ->> 3;
            WHEN 'schedule_clock' THEN
                UPDATE schedules SET last_fire_at = (s ->> 1)::float8 WHERE name = s ->> 2;
            WHEN 'schedule_missed' THEN
                UPDATE schedules SET missed = missed + 1,
                    last_fire_at = greatest(coalesce(last_fire_at, 0), (s ->> 1)::float8)
                 WHERE name = s ->> 2;
            WHEN 'schedule_skipped' THEN
                UPDATE schedules SET skipped = skipped + 1,
                    last_fire_at = greatest(coalesce(last_fire_at, 0), (s ->> 1)::float8)
                 WHERE name = s ->> 2;
            WHEN 'schedule_paused' THEN
                UPDATE schedules SET paused_at = (s ->> 1)::float8 WHERE name = s ->> 2;
            WHEN 'schedule_event' THEN
                INSERT INTO schedule_events (schedule, at, fire_time, kind, job_id, reason)
                VALUES (s ->> 1, (s ->> 2)::float8, (s ->> 3)::float8, s ->> 4,
                        (s ->> 5)::bigint, s ->> 6);
            ELSE
                RAISE EXCEPTION 'jobd_apply: unknown statement %', s ->> 0;
            END CASE;
        END LOOP;
    END LOOP;
    RETURN failed;
END $$;
