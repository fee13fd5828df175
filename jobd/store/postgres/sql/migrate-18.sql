-- Schema 18: a locked job's lock path in fewer executor runs (docs/performance.md, "Asset
-- locks on PostgreSQL and across nodes", schema 18; bench/pgreplay.py). The same rows are
-- written, in the same transactions, with the same notifications and the same rules (SPEC
-- §3.4: all-or-nothing, strict FIFO per asset, shared holders together); what changes is
-- how many statements write them. Each statement of a PL/pgSQL function that reads or
-- writes a table is an executor run of its own (~25,000 instructions of set-up before its
-- rows); a locked job went through ~20 of them. Now, for a job of the writing node:
--
-- - the request is ONE statement: INSERT ... ON CONFLICT DO NOTHING of the request and its
--   assets (a CTE), which also answers whether the request may be granted at once (a new
--   request is the newest on each of its assets, so: no row there that conflicts with it)
--   and whether its assets' advisory locks are this transaction's. Only a request that may
--   be granted goes on to jobd_lock_try; one that waits costs nothing more. Asking again
--   for a job that has a request (ON CONFLICT) is schema 15's way, unchanged.
-- - the grant is ONE statement: the UPDATE of the request's asset rows to held, whose WHERE
--   is the whole grantability test (the request's advisory locks free, and no conflicting
--   holder or earlier waiter on any of its assets: an uncorrelated test, so all of its rows
--   or none), with the request's start fields read in the same statement.
-- - the writing node's start of the job it was granted is ONE statement (a CTE): the job
--   running, its history row, its step's attempt, and the request's grant, start and undo,
--   the old values read under FOR UPDATE as before. Another node's job is started as
--   schema 14 did it (as that node: jobd_lock_start).
-- - the release is ONE statement: the request and its assets deleted, and the candidates
--   that this frees found in the same statement (the waiters of each of its assets up to
--   and including the first exclusive one, none while an exclusive holder remains: the
--   snapshot of the statement still sees the rows it deletes, so they are left out by job).
-- - calls of our functions are assignments (a simple expression, no executor), not PERFORM
--   (which runs a SELECT through the executor); jobd_apply walks its batch and each unit by
--   index, not by a SELECT over jsonb_array_elements per unit; jobd_apply_split takes its
--   advisory locks by assignment too.

-- Another node's job j, granted now (requested by node n): its start written as the node
-- that holds it (the claim trigger lets no other node move it; it stays that node's), as
-- schema 14's slow path. The undo (null: not started, the job does not wait any more).
CREATE OR REPLACE FUNCTION jobd_lock_start(j bigint, n text, s integer, a integer,
                                           t double precision)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    me text := current_setting('jobd.node', true);
    prev double precision;
    holder text;
    h bigint;
    st record;
    sent boolean;
BEGIN
    SELECT updated_at, node INTO prev, holder FROM jobs
     WHERE id = j AND state = 'waiting-for-lock' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    sent := set_config('jobd.node', coalesce(holder, ''), true) IS NULL;
    UPDATE jobs SET state = 'running', updated_at = t WHERE id = j;
    sent := set_config('jobd.node', coalesce(me, ''), true) IS NULL;
    INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
    VALUES (j, t, 'waiting-for-lock', 'running', 'lock granted', 'scheduler')
    RETURNING id INTO h;
    sent := pg_notify('jobd_locks', 'started ' || j || ' ' || n || ' ' || t || ' '
                      || coalesce(s::text, '-') || ' ' || coalesce(a::text, '-')) IS NULL;
    IF s IS NULL THEN
        RETURN jsonb_build_array(prev, h);
    END IF;
    UPDATE steps AS x SET state = 'running', attempts = a, started_at = t, ended_at = NULL,
                          error = NULL
      FROM (SELECT job_id, idx, state, attempts, started_at, ended_at, error FROM steps
             WHERE job_id = j AND idx = s FOR UPDATE) AS o
     WHERE x.job_id = o.job_id AND x.idx = o.idx
    RETURNING o.state, o.attempts, o.started_at, o.ended_at, o.error INTO st;
    IF NOT FOUND THEN
        RETURN jsonb_build_array(prev, h, NULL, NULL, NULL, NULL, NULL);
    END IF;
    RETURN jsonb_build_array(prev, h, st.state, st.attempts, st.started_at, st.ended_at,
                             st.error);
END $$;

-- Grant job j's waiting request if it may be granted (all of its assets at once); NOTIFY
-- its node: ``started`` when the grant started the job, else ``granted``. Its assets'
-- advisory locks are tried (held already when the caller took them): a busy one means
-- another transaction is changing that asset, and the node is told to ``recheck`` after it.
CREATE OR REPLACE FUNCTION jobd_lock_try(j bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    me text := current_setting('jobd.node', true);
    t double precision;
    r record;
    u jsonb;
    sent boolean;
BEGIN
    WITH q AS (
        SELECT node, start_job, start_step, start_attempts,
               NOT EXISTS (SELECT FROM lock_assets b
                            WHERE b.job_id = j
                              AND NOT pg_try_advisory_xact_lock(7316100, hashtext(b.asset)))
                   AS free
          FROM lock_requests WHERE job_id = j AND granted_at IS NULL
    ), held AS (
        UPDATE lock_assets SET held = true
         WHERE job_id = j AND (SELECT free FROM q)
           AND NOT EXISTS (  -- on any of its assets, a holder or an earlier waiter in the way
               SELECT FROM lock_assets c
                WHERE c.job_id = j
                  AND (EXISTS (SELECT FROM lock_assets h
                                WHERE h.asset = c.asset AND h.held
                                  AND (h.exclusive OR c.exclusive))
                       OR EXISTS (SELECT FROM lock_assets w
                                   WHERE w.asset = c.asset AND NOT w.held AND w.seq < c.seq
                                     AND (w.exclusive OR c.exclusive))))
        RETURNING 1
    )
    SELECT q.node, q.free, q.start_job, q.start_step, q.start_attempts,
           EXISTS (SELECT FROM held) AS granted
      INTO r FROM q;
    IF NOT FOUND THEN
        RETURN false;
    ELSIF NOT r.free THEN
        sent := pg_notify('jobd_locks', 'recheck ' || j || ' ' || r.node) IS NULL;
        RETURN false;
    ELSIF NOT r.granted THEN
        RETURN false;
    END IF;
    t := jobd_now();
    IF NOT r.start_job THEN
        UPDATE lock_requests SET granted_at = t WHERE job_id = j;
        sent := pg_notify('jobd_locks', 'granted ' || j || ' ' || r.node) IS NULL;
        RETURN true;
    END IF;
    -- The writing node's own job: its start and the request's grant in one statement.
    WITH o AS (
        SELECT id, updated_at FROM jobs
         WHERE id = j AND state = 'waiting-for-lock' AND node = me FOR UPDATE
    ), run AS (
        UPDATE jobs AS x SET state = 'running', updated_at = t FROM o WHERE x.id = o.id
        RETURNING o.updated_at AS prev
    ), hist AS (
        INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
        SELECT j, t, 'waiting-for-lock', 'running', 'lock granted', 'scheduler' FROM run
        RETURNING id
    ), so AS (
        SELECT job_id, idx, state, attempts, started_at, ended_at, error FROM steps
         WHERE job_id = j AND idx = r.start_step AND EXISTS (SELECT FROM run) FOR UPDATE
    ), step AS (
        UPDATE steps AS x SET state = 'running', attempts = r.start_attempts, started_at = t,
                              ended_at = NULL, error = NULL
          FROM so WHERE x.job_id = so.job_id AND x.idx = so.idx
        RETURNING so.state, so.attempts, so.started_at, so.ended_at, so.error
    ), undo AS (
        SELECT CASE WHEN r.start_step IS NULL THEN jsonb_build_array(run.prev, hist.id)
                    ELSE jsonb_build_array(run.prev, hist.id, step.state, step.attempts,
                                           step.started_at, step.ended_at, step.error)
               END AS u
          FROM run CROSS JOIN hist LEFT JOIN step ON true
    ), granted AS (
        UPDATE lock_requests AS x
           SET granted_at = t,
               started_at = CASE WHEN undo.u IS NULL THEN x.started_at ELSE t END,
               undo = coalesce(undo.u, x.undo)
          FROM (SELECT) AS one LEFT JOIN undo ON true
         WHERE x.job_id = j
    )
    SELECT undo.u INTO u FROM undo;
    IF u IS NULL THEN  -- not the writing node's job, or not waiting any more
        u := jobd_lock_start(j, r.node, r.start_step, r.start_attempts, t);
        IF u IS NULL THEN
            sent := pg_notify('jobd_locks', 'granted ' || j || ' ' || r.node) IS NULL;
            RETURN true;
        END IF;
        UPDATE lock_requests SET started_at = t, undo = u WHERE job_id = j;
        RETURN true;  -- jobd_lock_start sent ``started``
    END IF;
    sent := pg_notify('jobd_locks', 'started ' || j || ' ' || r.node || ' ' || t || ' '
                      || coalesce(r.start_step::text, '-') || ' '
                      || coalesce(r.start_attempts::text, '-')) IS NULL;
    RETURN true;
END $$;

-- Schema 3's: drop job j's request (held or waiting) if node n made it; the assets it was
-- on. One statement.
CREATE OR REPLACE FUNCTION jobd_lock_drop(j bigint, n text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    dropped text[];
BEGIN
    WITH r AS (
        DELETE FROM lock_requests WHERE job_id = j AND node = n RETURNING job_id
    ), gone AS (
        DELETE FROM lock_assets AS a USING r WHERE a.job_id = r.job_id RETURNING a.asset
    )
    SELECT array_agg(asset) INTO dropped FROM gone;
    RETURN coalesce(dropped, '{}');
END $$;

-- Release job j's request (held or waiting) if node n made it, and grant every waiter that
-- this makes grantable, oldest first: jobd_lock_pass(jobd_lock_drop(j, n)), with the drop
-- and the candidates in one statement. Whether there was a request.
CREATE FUNCTION jobd_lock_release(j bigint, n text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    dropped boolean;
    candidates bigint[];
    c bigint;
    sent boolean;
BEGIN
    WITH r AS (
        DELETE FROM lock_requests WHERE job_id = j AND node = n RETURNING job_id
    ), gone AS (
        DELETE FROM lock_assets AS a USING r WHERE a.job_id = r.job_id RETURNING a.asset
    ), nxt AS (  -- per asset freed: its waiters up to the first exclusive one; none while
                 -- an exclusive holder remains (j's own rows, deleted here, left out)
        SELECT DISTINCT w.job_id, w.seq
          FROM gone CROSS JOIN LATERAL (
              SELECT w.job_id, w.seq FROM lock_assets w
               WHERE w.asset = gone.asset AND NOT w.held AND w.job_id <> j
                 AND w.seq <= coalesce((SELECT x.seq FROM lock_assets x
                                         WHERE x.asset = gone.asset AND NOT x.held
                                           AND x.exclusive AND x.job_id <> j
                                         ORDER BY x.seq LIMIT 1), 9223372036854775807)
                 AND NOT EXISTS (SELECT FROM lock_assets h
                                  WHERE h.asset = gone.asset AND h.held AND h.exclusive
                                    AND h.job_id <> j)) AS w
    )
    SELECT EXISTS (SELECT FROM r), (SELECT array_agg(job_id ORDER BY seq) FROM nxt)
      INTO dropped, candidates;
    FOREACH c IN ARRAY coalesce(candidates, '{}') LOOP
        sent := jobd_lock_try(c);
    END LOOP;
    RETURN dropped;
END $$;

-- Node n asks for job j's locks: enqueued on all its assets at once, granted now if it may
-- be. Asking again (a restart's recovery) keeps the request's place, and tells the node
-- again when it holds them already. A request of another node for the same job (the job
-- moved) is dropped first. Whether it was granted now.
DROP FUNCTION jobd_lock_request(bigint, text, jsonb, jsonb, float8, boolean, integer, integer);
CREATE FUNCTION jobd_lock_request(j bigint, n text, excl jsonb, shared jsonb, since float8,
                                  starts boolean, step integer, attempts integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r record;
    old text;
    held boolean;
    sent boolean;
BEGIN
    IF jsonb_array_length(excl) = 1 AND jsonb_array_length(shared) = 0 THEN
        -- One exclusive asset (the common case): any row on it is in the way.
        WITH k AS (
            SELECT excl ->> 0 AS asset
        ), req AS (
            INSERT INTO lock_requests (job_id, node, seq, since, start_job, start_step,
                                       start_attempts)
            VALUES (j, n, nextval('jobd_lock_seq'), since, starts, step, attempts)
            ON CONFLICT (job_id) DO NOTHING
            RETURNING seq
        ), ins AS (
            INSERT INTO lock_assets (asset, seq, job_id, exclusive)
            SELECT k.asset, req.seq, j, true FROM k CROSS JOIN req
        )
        SELECT EXISTS (SELECT FROM req) AS new,
               pg_try_advisory_xact_lock(7316100, hashtext(k.asset)) AS free,
               NOT EXISTS (SELECT FROM lock_assets h WHERE h.asset = k.asset AND h.held)
               AND NOT EXISTS (SELECT FROM lock_assets w WHERE w.asset = k.asset AND NOT w.held)
                   AS grantable
          INTO r FROM k;
    ELSE
        WITH k AS (
            SELECT a AS asset, bool_or(x) AS exclusive FROM (
                SELECT value, true FROM jsonb_array_elements_text(excl)
                UNION ALL SELECT value, false FROM jsonb_array_elements_text(shared)) AS t (a, x)
            GROUP BY a
        ), req AS (
            INSERT INTO lock_requests (job_id, node, seq, since, start_job, start_step,
                                       start_attempts)
            VALUES (j, n, nextval('jobd_lock_seq'), since, starts, step, attempts)
            ON CONFLICT (job_id) DO NOTHING
            RETURNING seq
        ), ins AS (
            INSERT INTO lock_assets (asset, seq, job_id, exclusive)
            SELECT k.asset, req.seq, j, k.exclusive FROM k CROSS JOIN req
        )
        SELECT EXISTS (SELECT FROM req) AS new,
               NOT EXISTS (SELECT FROM k
                            WHERE NOT pg_try_advisory_xact_lock(7316100, hashtext(k.asset)))
                   AS free,
               NOT EXISTS (SELECT FROM k
                            WHERE EXISTS (SELECT FROM lock_assets h
                                           WHERE h.asset = k.asset AND h.held
                                             AND (h.exclusive OR k.exclusive))
                               OR EXISTS (SELECT FROM lock_assets w
                                           WHERE w.asset = k.asset AND NOT w.held
                                             AND (w.exclusive OR k.exclusive)))
                   AS grantable
          INTO r;
    END IF;
    IF r.new THEN
        IF NOT r.free THEN  -- as jobd_lock_try: another transaction is changing an asset
            sent := pg_notify('jobd_locks', 'recheck ' || j || ' ' || n) IS NULL;
            RETURN false;
        END IF;
        IF r.grantable THEN
            RETURN jobd_lock_try(j);
        END IF;
        RETURN false;
    END IF;
    SELECT node, granted_at IS NOT NULL INTO old, held FROM lock_requests WHERE job_id = j;
    IF old = n THEN
        IF held THEN
            PERFORM jobd_lock_tell(j, n);
            RETURN false;
        END IF;
        UPDATE lock_requests SET start_job = starts, start_step = step,
                                 start_attempts = attempts
         WHERE job_id = j;
        RETURN jobd_lock_try(j);
    END IF;
    sent := jobd_lock_release(j, old);  -- the job moved: its old request goes first
    RETURN jobd_lock_request(j, n, excl, shared, since, starts, step, attempts);
END $$;

-- Schema 13's lock statements, by assignment; a release (and a withdraw's) in one statement.
CREATE OR REPLACE FUNCTION jobd_apply_more(s jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    done boolean;
BEGIN
    CASE s ->> 0
    WHEN 'lock_request' THEN
        done := jobd_lock_request((s ->> 1)::bigint, s ->> 2, s -> 3, s -> 4,
                                  (s ->> 5)::float8, coalesce((s ->> 6)::boolean, false),
                                  (s ->> 7)::integer, (s ->> 8)::integer);
    WHEN 'lock_release' THEN
        done := jobd_lock_release((s ->> 1)::bigint, s ->> 2);
    WHEN 'lock_withdraw' THEN
        PERFORM jobd_lock_unstart((s ->> 1)::bigint, s ->> 2);
        done := jobd_lock_release((s ->> 1)::bigint, s ->> 2);
    WHEN 'lock_unstart' THEN
        PERFORM jobd_lock_unstart((s ->> 1)::bigint, s ->> 2);
    WHEN 'lock_regrant' THEN
        done := jobd_lock_try((s ->> 1)::bigint);
    WHEN 'lock_release_node' THEN
        PERFORM jobd_locks_release_node(s ->> 1);
    ELSE
        RETURN false;
    END CASE;
    RETURN true;
END $$;

-- Schema 16's, its advisory locks taken by assignment (one after the other, in key order).
CREATE OR REPLACE FUNCTION jobd_apply_split(ahead jsonb, n integer, locked jsonb, deps integer[],
                                            assets text[], jobs bigint[], nodes text[])
RETURNS integer[] LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_bitmapscan = off AS $$
DECLARE
    k integer;
    taken boolean;
    failed integer[];
BEGIN
    FOR k IN SELECT hashtext(a) FROM unnest(assets) AS a
             UNION SELECT hashtext(asset) FROM lock_assets WHERE job_id = ANY(jobs)
             UNION SELECT hashtext(la.asset) FROM lock_requests r
                     JOIN lock_assets la USING (job_id) WHERE r.node = ANY(nodes)
             ORDER BY 1 LOOP
        taken := pg_advisory_xact_lock(7316100, k) IS NULL;
    END LOOP;
    failed := jobd_apply_bulk(ahead);
    IF cardinality(failed) > 0 THEN
        SELECT jsonb_agg(CASE WHEN deps[o] = ANY(failed) THEN '[]'::jsonb ELSE u END ORDER BY o)
          INTO locked
          FROM jsonb_array_elements(locked) WITH ORDINALITY AS t(u, o);
    END IF;
    RETURN failed || ARRAY(SELECT i + n FROM unnest(jobd_apply(locked)) AS i);
END $$;

-- Schema 3's jobd_apply, walking the batch and each unit by index (each ``FOR ... IN SELECT
-- ... jsonb_array_elements`` was an executor run per unit); the same statements.
CREATE OR REPLACE FUNCTION jobd_apply(batch jsonb) RETURNS integer[] LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_bitmapscan = off AS $$
DECLARE
    u jsonb;
    s jsonb;
    i integer;
    k integer;
    failed integer[] := '{}';
BEGIN
    FOR i IN 0 .. jsonb_array_length(batch) - 1 LOOP
        u := batch -> i;
        FOR k IN 0 .. jsonb_array_length(u) - 1 LOOP
            s := u -> k;
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

ALTER FUNCTION jobd_apply_bulk(jsonb) SET enable_bitmapscan = off;
ALTER FUNCTION jobd_apply_locked(jsonb, text[], bigint[], text[]) SET enable_bitmapscan = off;
ALTER FUNCTION jobd_apply_split(jsonb, integer, jsonb, text[], bigint[], text[])
    SET enable_bitmapscan = off;
ALTER FUNCTION jobd_locks_release_node(text) SET enable_bitmapscan = off;
