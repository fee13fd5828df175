-- jobd schema for PostgreSQL, version 3: per-asset locks shared by the nodes of a cluster
-- (SPEC §3.4 and §10; jobd.store.postgres.locks holds the Python side).
--
-- A job's lock request is one row of lock_requests (its node, its place ``seq`` in the one
-- arrival order of every request, when it began to wait, when it was granted) and one row
-- per asset of lock_assets (exclusive or shared, held or waiting). The rules are the
-- in-memory LockManager's (jobd/engine/locks.py): all-or-nothing over a request's assets, strict
-- FIFO per asset (a shared request waits behind an earlier exclusive one), shared holders
-- together; a request is granted when, on every one of its assets, no holder conflicts with
-- it and no earlier waiter does.
--
-- Serialisation: every change to an asset's rows happens under the transaction-level
-- advisory lock (7316100, hashtext(asset)). jobd_apply_locked takes the locks of every asset
-- a batch's lock statements touch at its start, in the order of their keys, so two nodes'
-- batches never deadlock. A waiter that a release makes grantable may have other assets,
-- outside that set: they are taken with pg_try_advisory_xact_lock (which never waits, so no
-- deadlock either); when one is busy, the waiter's node is told to ``recheck`` it, which
-- it does in a transaction of its own (``lock_regrant``) that takes all its locks in order.
-- Nothing is lost between the two: whoever frees an asset re-examines its waiters.
--
-- Wake-ups: each grant NOTIFYs ``jobd_locks`` with ``granted <job> <node>`` (``recheck
-- <job> <node>`` for the case above), delivered when the transaction commits; the waiter's
-- node (whichever it is) runs it at once. Nodes poll their own requests only as a fallback.

CREATE SEQUENCE jobd_lock_seq;

CREATE TABLE lock_requests (
    job_id     bigint PRIMARY KEY,
    node       text   NOT NULL,
    seq        bigint NOT NULL,
    since      double precision NOT NULL,   -- POSIX seconds: when the job began to wait
    granted_at double precision             -- null while it waits
);
CREATE INDEX lock_requests_by_node ON lock_requests (node, seq);

CREATE TABLE lock_assets (
    asset     text    NOT NULL,
    seq       bigint  NOT NULL,             -- the request's seq
    job_id    bigint  NOT NULL,
    exclusive boolean NOT NULL,
    held      boolean NOT NULL DEFAULT false
);
-- Few indexes, each one read by the functions below: every grant rewrites the row.
CREATE INDEX lock_assets_by_job ON lock_assets (job_id);
CREATE INDEX lock_assets_waiting ON lock_assets (asset, seq) INCLUDE (exclusive, job_id)
    WHERE NOT held;
CREATE INDEX lock_assets_held ON lock_assets (asset) INCLUDE (exclusive) WHERE held;

-- May job j's waiting request be granted now (all of its assets)? PL/pgSQL, not SQL: its
-- plan is kept for the session's next calls.
CREATE FUNCTION jobd_lock_grantable(j bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT FROM lock_assets r
         WHERE r.job_id = j
           AND (EXISTS (SELECT FROM lock_assets h
                         WHERE h.asset = r.asset AND h.held AND (h.exclusive OR r.exclusive))
                OR EXISTS (SELECT FROM lock_assets w
                            WHERE w.asset = r.asset AND NOT w.held AND w.seq < r.seq
                              AND (w.exclusive OR r.exclusive))));
END $$;

-- Grant job j's waiting request if it may be granted; NOTIFY its node. Its assets' advisory
-- locks are tried (held already when the caller took them): a busy one means another
-- transaction is changing that asset, and the node is told to recheck after it.
CREATE FUNCTION jobd_lock_try(j bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    n text;
BEGIN
    SELECT node INTO n FROM lock_requests WHERE job_id = j AND granted_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM lock_assets
                WHERE job_id = j AND NOT pg_try_advisory_xact_lock(7316100, hashtext(asset)))
    THEN
        PERFORM pg_notify('jobd_locks', 'recheck ' || j || ' ' || n);
        RETURN false;
    END IF;
    IF NOT jobd_lock_grantable(j) THEN
        RETURN false;
    END IF;
    UPDATE lock_assets SET held = true WHERE job_id = j;
    UPDATE lock_requests SET granted_at = extract(epoch FROM clock_timestamp())
     WHERE job_id = j;
    PERFORM pg_notify('jobd_locks', 'granted ' || j || ' ' || n);
    RETURN true;
END $$;

-- Drop job j's request (held or waiting) if node n made it; the assets it was on.
CREATE FUNCTION jobd_lock_drop(j bigint, n text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    dropped text[];
BEGIN
    DELETE FROM lock_requests WHERE job_id = j AND node = n;
    IF NOT FOUND THEN
        RETURN '{}';
    END IF;
    WITH gone AS (DELETE FROM lock_assets WHERE job_id = j RETURNING asset)
    SELECT array_agg(asset) INTO dropped FROM gone;
    RETURN coalesce(dropped, '{}');
END $$;

-- After holds or waits were dropped on ``assets``: grant every waiter that this made
-- grantable, oldest first (granting only adds holders, so one pass is enough). The
-- candidates on an asset are its waiters up to and including the first exclusive one.
CREATE FUNCTION jobd_lock_pass(assets text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a text;
    first_exclusive bigint;
    candidates bigint[] := '{}';
    c bigint;
BEGIN
    FOREACH a IN ARRAY assets LOOP
        CONTINUE WHEN EXISTS (SELECT FROM lock_assets WHERE asset = a AND held AND exclusive);
        SELECT seq INTO first_exclusive FROM lock_assets
         WHERE asset = a AND NOT held AND exclusive ORDER BY seq LIMIT 1;
        IF first_exclusive IS NULL THEN  -- shared waiters only: all of them
            candidates := candidates || ARRAY(
                SELECT job_id FROM lock_assets WHERE asset = a AND NOT held);
        ELSE  -- up to the first exclusive one (an index range: usually one row)
            candidates := candidates || ARRAY(
                SELECT job_id FROM lock_assets
                 WHERE asset = a AND NOT held AND seq <= first_exclusive);
        END IF;
    END LOOP;
    IF cardinality(candidates) = 1 THEN
        PERFORM jobd_lock_try(candidates[1]);
        RETURN;
    END IF;
    FOR c IN SELECT job_id FROM lock_requests
              WHERE job_id = ANY(candidates) AND granted_at IS NULL ORDER BY seq LOOP
        PERFORM jobd_lock_try(c);
    END LOOP;
END $$;

-- Node n asks for job j's locks: enqueued on all its assets at once, granted now if it may
-- be. Asking again (a restart's recovery) keeps the request's place, and tells the node
-- again when it holds them already. A request of another node for the same job (the job
-- moved) is dropped first.
CREATE FUNCTION jobd_lock_request(j bigint, n text, excl jsonb, shared jsonb, since float8)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old text;
    held boolean;
    place bigint;
BEGIN
    SELECT node, granted_at IS NOT NULL INTO old, held FROM lock_requests WHERE job_id = j;
    IF FOUND AND old = n THEN
        IF held THEN
            PERFORM pg_notify('jobd_locks', 'granted ' || j || ' ' || n);
        ELSE
            PERFORM jobd_lock_try(j);
        END IF;
        RETURN;
    ELSIF FOUND THEN
        PERFORM jobd_lock_pass(jobd_lock_drop(j, old));
    END IF;
    place := nextval('jobd_lock_seq');
    INSERT INTO lock_requests (job_id, node, seq, since) VALUES (j, n, place, since);
    INSERT INTO lock_assets (asset, seq, job_id, exclusive)
        SELECT a, place, j, bool_or(x) FROM (
            SELECT value, true FROM jsonb_array_elements_text(excl)
            UNION ALL SELECT value, false FROM jsonb_array_elements_text(shared)) AS t (a, x)
        GROUP BY a;
    PERFORM jobd_lock_try(j);
END $$;

-- Takeover (SPEC §10): drop every request of node n, held or waiting, and pass its assets
-- on to the next waiters (NOTIFYing their nodes). Call it only once n is fenced (its lease
-- ran out). Takes its own advisory locks, in order: call it in a transaction that holds no
-- other asset lock. Returns the jobs whose requests were dropped, in request order.
CREATE FUNCTION jobd_locks_release_node(n text) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    k integer;
    jobs bigint[];
    j bigint;
    dropped text[] := '{}';
BEGIN
    FOR k IN SELECT DISTINCT hashtext(la.asset) FROM lock_requests r
               JOIN lock_assets la USING (job_id) WHERE r.node = n ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(7316100, k);
    END LOOP;
    SELECT array_agg(job_id ORDER BY seq) INTO jobs FROM lock_requests WHERE node = n;
    FOREACH j IN ARRAY coalesce(jobs, '{}') LOOP
        dropped := dropped || jobd_lock_drop(j, n);
    END LOOP;
    PERFORM jobd_lock_pass(ARRAY(SELECT DISTINCT unnest(dropped)));
    RETURN coalesce(jobs, '{}');
END $$;

-- The lock statements of jobd_apply (called from its ELSE): only through jobd_apply_locked,
-- which holds their assets' advisory locks.
CREATE FUNCTION jobd_apply_more(s jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    CASE s ->> 0
    WHEN 'lock_request' THEN
        PERFORM jobd_lock_request((s ->> 1)::bigint, s ->> 2, s -> 3, s -> 4,
                                  (s ->> 5)::float8);
    WHEN 'lock_release' THEN
        PERFORM jobd_lock_pass(jobd_lock_drop((s ->> 1)::bigint, s ->> 2));
    WHEN 'lock_regrant' THEN
        PERFORM jobd_lock_try((s ->> 1)::bigint);
    WHEN 'lock_release_node' THEN
        PERFORM jobd_locks_release_node(s ->> 1);
    ELSE
        RETURN false;
    END CASE;
    RETURN true;
END $$;

-- A batch with lock statements: first the advisory locks of every asset they touch (the
-- ``assets`` asked for, those of the requests of ``jobs`` and of every request of
-- ``nodes``), in key order, then jobd_apply.
CREATE FUNCTION jobd_apply_locked(batch jsonb, assets text[], jobs bigint[], nodes text[])
RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    k integer;
BEGIN
    FOR k IN SELECT hashtext(a) FROM unnest(assets) AS a
             UNION SELECT hashtext(asset) FROM lock_assets WHERE job_id = ANY(jobs)
             UNION SELECT hashtext(la.asset) FROM lock_requests r
                     JOIN lock_assets la USING (job_id) WHERE r.node = ANY(nodes)
             ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(7316100, k);
    END LOOP;
    RETURN jobd_apply(batch);
END $$;

CREATE OR REPLACE FUNCTION jobd_apply(batch jsonb) RETURNS integer[] LANGUAGE plpgsql AS $$
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
                -- Later statements (asset locks, ...): functions of their own migrations.
                IF NOT jobd_apply_more(s) THEN
                    RAISE EXCEPTION 'jobd_apply: unknown statement %', s ->> 0;
                END IF;
            END CASE;
        END LOOP;
    END LOOP;
    RETURN failed;
END $$;
