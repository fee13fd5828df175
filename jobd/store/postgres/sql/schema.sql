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
CREATE TRIGGER jobs_keys AFTER INSERT OR DELETE OR UPDATE OF spec ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobd_job_keys();

CREATE FUNCTION jobd_reservation_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_keys (kind, key, job_id) VALUES ('resource', NEW.resource, NEW.job_id)
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER reservations_keys AFTER INSERT ON reservations
    FOR EACH ROW EXECUTE FUNCTION jobd_reservation_keys();
