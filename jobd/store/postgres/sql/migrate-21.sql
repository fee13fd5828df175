-- Schema 21: a batch's lock releases, the grants they make, the grants' starts, and its lock
-- requests, set-based (docs/performance.md, "A batch's releases, grants, starts and requests
-- set-based", schema 21; bench/pgreplay.py). The same rows are written, in the same
-- transactions, with the same notifications and the same rules (SPEC §3.4: all-or-nothing,
-- strict FIFO per asset, shared holders together).
--
-- Before, each unit of a batch that released a lock (the holder's outcome) was one
-- jobd_lock_release: its DELETEs, then per waiter it freed a jobd_lock_try, whose grant and
-- start were a single-row UPDATE of lock_assets and a CTE of four single-row writes (jobs,
-- history, steps, lock_requests). Each is an executor run with its plan's nodes set up and
-- torn down (each ModifyTable opens its table's indexes, ~23,600 instructions) for one row:
-- a locked job paid ~9 of them. Now a run of consecutive units that are each one
-- lock_release (a batch of outcomes: the hot path) is ONE jobd_lock_release_many:
--
-- - the requests and their assets deleted, and the waiters this frees found, in one
--   statement (as jobd_lock_release's, over every released job at once);
-- - the plain candidates granted in one statement: a request for one asset, exclusive, the
--   first waiter on that asset, no holder left there, its advisory lock ours. Such requests
--   are on distinct assets (each is the first on its own) and conflict with no earlier
--   waiter, so granting them together is what granting them one by one does;
-- - their starts in one statement per node that holds the jobs (jobd_lock_start_many:
--   running, history, the step's attempt, the request's grant, start and undo, NOTIFY
--   started), the writing node's first, another node's as that node (as jobd_lock_start
--   does for one); the other grants in one statement (NOTIFY granted);
-- - every other candidate (shared, several assets, a busy advisory lock) through
--   jobd_lock_try one by one afterwards, oldest first, as before.
--
-- Why releasing together grants the same requests as releasing one after the other: a
-- request is grantable when no holder and no earlier waiter conflicts with it on any of its
-- assets; releasing more only removes holders, and the candidates are tried oldest first,
-- so each grant made one by one is made here too, and none that one by one would not make.
--
-- A run of consecutive units that are each one lock_request is ONE jobd_lock_request_many:
-- the requests and their assets written in one statement, in the batch's order, then which
-- may be granted (the run's earlier requests are rows by then, as one by one).

-- Start the jobs among ids that are waiting for their lock, held by node holder (the session
-- writes as that node), and whose granted request starts them: running, the ``lock granted``
-- history row, the step's attempt, the request's grant, start and undo (the values the start
-- changed, for jobd_lock_unstart), NOTIFY ``started`` to the requesting node; at time t, in
-- one statement (jobd_lock_try's CTE, for a set of jobs). The jobs started.
CREATE FUNCTION jobd_lock_start_many(ids bigint[], holder text, t double precision)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    started bigint[];
    told bigint;
BEGIN
    WITH q AS (
        SELECT job_id, node, seq, start_step, start_attempts FROM lock_requests
         WHERE job_id = ANY(ids) AND start_job
    ), o AS (  -- each by its key (a lateral row each: no other index for the planner)
        SELECT j.id, j.updated_at, q.seq, q.start_step, q.start_attempts
          FROM q CROSS JOIN LATERAL (
              SELECT id, updated_at FROM jobs
               WHERE id = q.job_id AND state = 'waiting-for-lock' AND node = holder
                 FOR UPDATE) AS j
    ), run AS (
        UPDATE jobs AS x SET state = 'running', updated_at = t FROM o WHERE x.id = o.id
        RETURNING o.id, o.seq, o.updated_at AS prev, o.start_step, o.start_attempts
    ), hist AS (
        INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
        SELECT id, t, 'waiting-for-lock', 'running', 'lock granted', 'scheduler'
          FROM run ORDER BY seq
        RETURNING id, job_id
    ), so AS (
        SELECT s.job_id, s.idx, s.state, s.attempts, s.started_at, s.ended_at, s.error,
               run.start_attempts
          FROM steps s JOIN run ON s.job_id = run.id AND s.idx = run.start_step
           FOR UPDATE OF s
    ), step AS (
        UPDATE steps AS x SET state = 'running', attempts = so.start_attempts,
                              started_at = t, ended_at = NULL, error = NULL
          FROM so WHERE x.job_id = so.job_id AND x.idx = so.idx
        RETURNING so.job_id, so.state, so.attempts, so.started_at, so.ended_at, so.error
    ), undo AS (
        SELECT run.id,
               CASE WHEN run.start_step IS NULL THEN jsonb_build_array(run.prev, hist.id)
                    ELSE jsonb_build_array(run.prev, hist.id, step.state, step.attempts,
                                           step.started_at, step.ended_at, step.error)
               END AS u
          FROM run JOIN hist ON hist.job_id = run.id LEFT JOIN step ON step.job_id = run.id
    ), granted AS (
        UPDATE lock_requests AS x SET granted_at = t, started_at = t, undo = undo.u
          FROM undo WHERE x.job_id = undo.id
    )
    SELECT array_agg(q.job_id ORDER BY q.seq),
           count(pg_notify('jobd_locks', 'started ' || q.job_id || ' ' || q.node || ' ' || t
                           || ' ' || coalesce(q.start_step::text, '-') || ' '
                           || coalesce(q.start_attempts::text, '-')))
      INTO started, told
      FROM undo JOIN q ON q.job_id = undo.id;
    RETURN coalesce(started, '{}');
END $$;

-- Release the requests of jobs js (each if node ns[i] made it), and grant every waiter this
-- makes grantable, oldest first.
CREATE FUNCTION jobd_lock_release_many(js bigint[], ns text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    me text := current_setting('jobd.node', true);
    candidates bigint[];
    plain bigint[];
    holders text[];
    holder text;
    starts bigint[];
    done bigint[];
    n bigint;
    c bigint;
    t double precision;
    r record;
    u jsonb;
    sent boolean;
BEGIN
    WITH rel AS (
        DELETE FROM lock_requests AS x
         WHERE x.job_id = ANY(js) AND x.node = ns[array_position(js, x.job_id)]
        RETURNING x.job_id
    ), d AS (
        SELECT coalesce(array_agg(job_id), '{}') AS ids FROM rel
    ), gone AS (
        DELETE FROM lock_assets AS a USING rel WHERE a.job_id = rel.job_id RETURNING a.asset
    ), freed AS (
        SELECT DISTINCT asset FROM gone
    ), nxt AS (  -- per asset freed: its waiters up to the first exclusive one; none while
                 -- an exclusive holder remains (the released rows, deleted here, left out)
        SELECT DISTINCT w.job_id, w.seq
          FROM freed CROSS JOIN LATERAL (
              SELECT w.job_id, w.seq FROM lock_assets w
               WHERE w.asset = freed.asset AND NOT w.held AND w.job_id <> ALL((SELECT ids FROM d)::bigint[])
                 AND w.seq <= coalesce((SELECT x.seq FROM lock_assets x
                                         WHERE x.asset = freed.asset AND NOT x.held
                                           AND x.exclusive
                                           AND x.job_id <> ALL((SELECT ids FROM d)::bigint[])
                                         ORDER BY x.seq LIMIT 1), 9223372036854775807)
                 AND NOT EXISTS (SELECT FROM lock_assets h
                                  WHERE h.asset = freed.asset AND h.held AND h.exclusive
                                    AND h.job_id <> ALL((SELECT ids FROM d)::bigint[]))) AS w
    )
    SELECT array_agg(job_id ORDER BY seq) INTO candidates FROM nxt;
    IF candidates IS NULL THEN
        RETURN;
    END IF;
    -- The plain candidates, granted together (the released rows are gone by now).
    WITH f AS (
        SELECT a.job_id, a.asset FROM lock_assets a
         WHERE a.job_id = ANY(candidates) AND a.exclusive AND NOT a.held
           AND NOT EXISTS (SELECT FROM lock_assets o
                            WHERE o.job_id = a.job_id AND o.asset <> a.asset)
           AND NOT EXISTS (SELECT FROM lock_assets h WHERE h.asset = a.asset AND h.held)
           AND NOT EXISTS (SELECT FROM lock_assets w
                            WHERE w.asset = a.asset AND NOT w.held AND w.seq < a.seq)
           AND pg_try_advisory_xact_lock(7316100, hashtext(a.asset))
    ), g AS (
        UPDATE lock_assets AS x SET held = true FROM f
         WHERE x.job_id = f.job_id AND x.asset = f.asset RETURNING x.job_id
    )
    SELECT array_agg(job_id) INTO plain FROM g;
    IF plain IS NOT NULL THEN
        t := jobd_now();
        -- The writing node's own jobs among them started (one statement), then every other
        -- one's grant (one statement): NOTIFY ``granted``, or for one whose grant starts it,
        -- started as the node that holds it (the jobs of each such node together).
        n := cardinality(jobd_lock_start_many(plain, me, t));
        WITH g AS (
            UPDATE lock_requests SET granted_at = t
             WHERE job_id = ANY(plain) AND granted_at IS NULL
            RETURNING job_id, node, start_job
        )
        SELECT array_agg(job_id) FILTER (WHERE start_job),
               sum(CASE WHEN NOT start_job
                        THEN (pg_notify('jobd_locks', 'granted ' || job_id || ' ' || node)
                              IS NULL)::integer END)
          INTO starts, n FROM g;
        IF starts IS NOT NULL THEN
            SELECT array_agg(DISTINCT h) INTO holders FROM (  -- each job by its key
                SELECT (SELECT j.node FROM jobs j
                         WHERE j.id = x AND j.state = 'waiting-for-lock') AS h
                  FROM unnest(starts) AS x) AS t
             WHERE h IS NOT NULL AND h IS DISTINCT FROM me;
            done := '{}';
            FOREACH holder IN ARRAY coalesce(holders, '{}') LOOP
                sent := set_config('jobd.node', holder, true) IS NULL;
                done := done || jobd_lock_start_many(starts, holder, t);
                sent := set_config('jobd.node', coalesce(me, ''), true) IS NULL;
            END LOOP;
            -- One not started by now (not waiting any more, no node holds it): as
            -- jobd_lock_try does it.
            FOREACH c IN ARRAY starts LOOP
                CONTINUE WHEN c = ANY(done);
                SELECT node, start_step, start_attempts INTO r FROM lock_requests WHERE job_id = c;
                u := jobd_lock_start(c, r.node, r.start_step, r.start_attempts, t);
                IF u IS NULL THEN
                    sent := pg_notify('jobd_locks', 'granted ' || c || ' ' || r.node) IS NULL;
                ELSE
                    UPDATE lock_requests SET started_at = t, undo = u WHERE job_id = c;
                END IF;
            END LOOP;
        END IF;
    END IF;
    -- Every other candidate, one by one, oldest first.
    FOREACH c IN ARRAY candidates LOOP
        IF plain IS NULL OR c <> ALL(plain) THEN
            sent := jobd_lock_try(c);
        END IF;
    END LOOP;
END $$;

-- Node ns's requests, units a .. b of batch (each one lock_request statement, as
-- jobd_lock_request takes them): enqueued in their order, each granted now if it may be.
-- Requests of jobs that have one already (a restart's recovery, a job that moved) or that
-- name one job twice go one by one through jobd_lock_request, as before.
CREATE FUNCTION jobd_lock_request_many(batch jsonb, a integer, b integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s jsonb;
    i integer;
    js bigint[];
    r record;
    sent boolean;
BEGIN
    SELECT array_agg((x -> 0 ->> 1)::bigint ORDER BY o) INTO js
      FROM jsonb_array_elements(batch) WITH ORDINALITY AS t (x, o) WHERE o - 1 BETWEEN a AND b;
    IF cardinality(js) <> (SELECT count(DISTINCT j) FROM unnest(js) AS j)
       OR EXISTS (SELECT FROM lock_requests WHERE job_id = ANY(js)) THEN
        FOR i IN a .. b LOOP
            s := batch -> i -> 0;
            sent := jobd_lock_request((s ->> 1)::bigint, s ->> 2, s -> 3, s -> 4,
                                      (s ->> 5)::float8, coalesce((s ->> 6)::boolean, false),
                                      (s ->> 7)::integer, (s ->> 8)::integer);
        END LOOP;
        RETURN;
    END IF;
    -- Every request and its assets, in one statement; their places in the batch's order.
    WITH e AS (
        SELECT (x ->> 1)::bigint AS j, x ->> 2 AS n, x -> 3 AS excl, x -> 4 AS shared,
               (x ->> 5)::float8 AS since, coalesce((x ->> 6)::boolean, false) AS starts,
               (x ->> 7)::integer AS step, (x ->> 8)::integer AS attempts
          FROM (SELECT t.x -> 0 AS x FROM jsonb_array_elements(batch) WITH ORDINALITY AS t (x, o)
                 WHERE o - 1 BETWEEN a AND b ORDER BY o) AS u
    ), req AS (
        INSERT INTO lock_requests (job_id, node, seq, since, start_job, start_step,
                                   start_attempts)
        SELECT j, n, nextval('jobd_lock_seq'), since, starts, step, attempts FROM e
        RETURNING job_id, seq
    ), k AS (
        SELECT e.j, t.asset, bool_or(t.x) AS exclusive
          FROM e CROSS JOIN LATERAL (
              SELECT value, true FROM jsonb_array_elements_text(e.excl)
              UNION ALL SELECT value, false FROM jsonb_array_elements_text(e.shared))
              AS t (asset, x)
         GROUP BY e.j, t.asset
    )
    INSERT INTO lock_assets (asset, seq, job_id, exclusive)
    SELECT k.asset, req.seq, k.j, k.exclusive FROM k JOIN req ON req.job_id = k.j;
    -- Which may be granted now (no holder and no earlier waiter in the way on any of its
    -- assets: the run's earlier requests are rows by now) and whether its assets' advisory
    -- locks are this transaction's, as jobd_lock_request answers for one.
    FOR r IN
        SELECT q.job_id, q.node,
               NOT EXISTS (SELECT FROM lock_assets c
                            WHERE c.job_id = q.job_id
                              AND NOT pg_try_advisory_xact_lock(7316100, hashtext(c.asset)))
                   AS free,
               NOT EXISTS (
                   SELECT FROM lock_assets c
                    WHERE c.job_id = q.job_id
                      AND (EXISTS (SELECT FROM lock_assets h
                                    WHERE h.asset = c.asset AND h.held
                                      AND (h.exclusive OR c.exclusive))
                           OR EXISTS (SELECT FROM lock_assets w
                                       WHERE w.asset = c.asset AND NOT w.held
                                         AND w.seq < c.seq AND (w.exclusive OR c.exclusive))))
                   AS grantable
          FROM lock_requests q WHERE q.job_id = ANY(js) ORDER BY q.seq
    LOOP
        IF NOT r.free THEN  -- as jobd_lock_request: another transaction is changing an asset
            sent := pg_notify('jobd_locks', 'recheck ' || r.job_id || ' ' || r.node) IS NULL;
        ELSIF r.grantable THEN
            sent := jobd_lock_try(r.job_id);
        END IF;
    END LOOP;
END $$;

-- Schema 18's jobd_apply, with a run of consecutive units that are each one lock_release
-- applied by jobd_lock_release_many, and a run of two or more that are each one lock_request
-- by jobd_lock_request_many (a unit of one lock statement never fails: nothing to report).
CREATE OR REPLACE FUNCTION jobd_apply(batch jsonb) RETURNS integer[] LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_bitmapscan = off AS $$
DECLARE
    u jsonb;
    s jsonb;
    i integer := 0;
    k integer;
    last integer := jsonb_array_length(batch) - 1;
    js bigint[];
    ns text[];
    done boolean;
    failed integer[] := '{}';
BEGIN
    WHILE i <= last LOOP
        u := batch -> i;
        IF jsonb_array_length(u) = 1 AND u -> 0 ->> 0 = 'lock_request'
           AND jsonb_array_length(coalesce(batch -> (i + 1), '[]')) = 1
           AND batch -> (i + 1) -> 0 ->> 0 = 'lock_request' THEN
            -- A run of units that are each one request: enqueued together.
            k := i;
            WHILE i < last LOOP
                u := batch -> (i + 1);
                EXIT WHEN jsonb_array_length(u) <> 1 OR u -> 0 ->> 0 <> 'lock_request';
                i := i + 1;
            END LOOP;
            done := jobd_lock_request_many(batch, k, i) IS NULL;
            i := i + 1;
            CONTINUE;
        END IF;
        IF jsonb_array_length(u) = 1 AND u -> 0 ->> 0 = 'lock_release' THEN
            -- A run of units that are each one release: released together.
            js := '{}';
            ns := '{}';
            WHILE i <= last LOOP
                u := batch -> i;
                EXIT WHEN jsonb_array_length(u) <> 1 OR u -> 0 ->> 0 <> 'lock_release';
                js := js || (u -> 0 ->> 1)::bigint;
                ns := ns || (u -> 0 ->> 2);
                i := i + 1;
            END LOOP;
            IF cardinality(js) = 1 THEN
                done := jobd_lock_release(js[1], ns[1]);
            ELSE
                done := jobd_lock_release_many(js, ns) IS NULL;
            END IF;
            CONTINUE;
        END IF;
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
        i := i + 1;
    END LOOP;
    RETURN failed;
END $$;


-- A batch's lock statements planned once: their plans kept (generic), not planned again at
-- every call for its parameters (every statement here reads by key or by an index's leading
-- columns, whatever the parameters).
ALTER FUNCTION jobd_apply_split(jsonb, integer, jsonb, integer[], text[], bigint[], text[])
    SET plan_cache_mode = force_generic_plan;
