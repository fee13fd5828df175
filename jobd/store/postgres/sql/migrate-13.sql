-- Schema 13: the one-commit lock hand-off (SPEC §3.4, §10; docs/performance.md, "Asset
-- locks on PostgreSQL and across nodes").
--
-- Until now a grant only marked the waiter's request held and NOTIFYed its node, which then
-- wrote the job's ``running`` in a transaction of its own: two durable commits in a row per
-- hand-off (the release's, then the waiter's), each behind whatever batch its node's writer
-- had in flight. Now a request may carry its job's START: when the grant comes, the same
-- transaction also moves the job waiting-for-lock -> running (its history row: "lock
-- granted", by the scheduler) and begins the attempt of the step the run starts with, and
-- the NOTIFY is ``started <job> <node> <at> <step> <attempts>``: the waiter's node (any
-- node) runs the step at once, with nothing more to write first. One commit per hand-off,
-- as in memory.
--
-- The start is written on behalf of the waiter's node: the claim trigger (schema 9) lets
-- only a job's own node move it, so jobd_lock_start writes as the node that holds the job
-- (``jobd.node`` set for that statement, then put back; the job stays that node's). The
-- fencing token of the writing node is checked as for any batch.
--
-- A start the waiter's node has not taken up yet may still be WITHDRAWN by that node (the
-- job was canceled, paused or timed out meanwhile: its node decided before it heard of the
-- start): ``lock_withdraw`` puts back what the start wrote (the job's state and
-- updated_at, the step's fields, the history row goes) and drops the request, so that the
-- node's next transition from waiting-for-lock finds the job as it left it. ``lock_unstart``
-- puts the start back but keeps the grant (a node that stops before running it: on its next
-- start the job holds its assets and writes its ``running`` itself). A node that dies before
-- it took a start up leaves the job ``running``: it is an interrupted attempt, as any job
-- running on a node that dies (SPEC §3, §10).

ALTER TABLE lock_requests
    ADD COLUMN start_job      boolean NOT NULL DEFAULT false,  -- the grant starts the job
    ADD COLUMN start_step     integer,           -- the step whose attempt begins (null: none)
    ADD COLUMN start_attempts integer,           -- that step's attempts once begun
    ADD COLUMN started_at     double precision,  -- when a grant started it (null: not started)
    ADD COLUMN undo           jsonb;             -- what the start changed, to put it back

-- Start job j (granted just now, requested by node n) if it is still waiting-for-lock: its
-- running, its history row, its first step's attempt; NOTIFY ``started`` to n. False
-- (nothing written) when the job is not waiting any more: the caller NOTIFYs ``granted``
-- instead, and n writes the start itself, as before schema 13.
CREATE FUNCTION jobd_lock_start(j bigint, n text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    t double precision := jobd_now();
    me text := current_setting('jobd.node', true);
    s integer;
    a integer;
    prev double precision;
    holder text;
    h bigint;
    st record;
BEGIN
    SELECT start_step, start_attempts INTO s, a FROM lock_requests WHERE job_id = j;
    SELECT updated_at, node INTO prev, holder FROM jobs
     WHERE id = j AND state = 'waiting-for-lock' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- As the node that holds the job (the claim trigger lets no other move it); it stays its.
    PERFORM set_config('jobd.node', coalesce(holder, ''), true);
    UPDATE jobs SET state = 'running', updated_at = t WHERE id = j;
    PERFORM set_config('jobd.node', coalesce(me, ''), true);
    INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
    VALUES (j, t, 'waiting-for-lock', 'running', 'lock granted', 'scheduler')
    RETURNING id INTO h;
    IF s IS NOT NULL THEN
        SELECT state, attempts, started_at, ended_at, error INTO st FROM steps
         WHERE job_id = j AND idx = s FOR UPDATE;
        UPDATE steps SET state = 'running', attempts = a, started_at = t, ended_at = NULL,
                         error = NULL
         WHERE job_id = j AND idx = s;
        UPDATE lock_requests SET started_at = t, undo = jsonb_build_array(
                   prev, h, st.state, st.attempts, st.started_at, st.ended_at, st.error)
         WHERE job_id = j;
    ELSE
        UPDATE lock_requests SET started_at = t, undo = jsonb_build_array(prev, h)
         WHERE job_id = j;
    END IF;
    PERFORM pg_notify('jobd_locks', 'started ' || j || ' ' || n || ' ' || t || ' '
                      || coalesce(s::text, '-') || ' ' || coalesce(a::text, '-'));
    RETURN true;
END $$;

-- Put back what jobd_lock_start wrote for job j of node n (when it started it), keeping
-- the grant. Only for a start that node has not taken up (its own word: it calls this).
CREATE FUNCTION jobd_lock_unstart(j bigint, n text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    me text := current_setting('jobd.node', true);
    u jsonb;
    s integer;
    holder text;
BEGIN
    SELECT undo, start_step INTO u, s FROM lock_requests
     WHERE job_id = j AND node = n AND started_at IS NOT NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT node INTO holder FROM jobs WHERE id = j AND state = 'running' FOR UPDATE;
    IF FOUND THEN
        PERFORM set_config('jobd.node', coalesce(holder, ''), true);  -- as jobd_lock_start
        UPDATE jobs SET state = 'waiting-for-lock', updated_at = (u ->> 0)::float8
         WHERE id = j;
        PERFORM set_config('jobd.node', coalesce(me, ''), true);
        DELETE FROM history WHERE id = (u ->> 1)::bigint;
        IF s IS NOT NULL THEN
            UPDATE steps SET state = u ->> 2, attempts = (u ->> 3)::integer,
                             started_at = (u ->> 4)::float8, ended_at = (u ->> 5)::float8,
                             error = u ->> 6
             WHERE job_id = j AND idx = s;
        END IF;
    END IF;
    UPDATE lock_requests SET started_at = NULL, undo = NULL WHERE job_id = j;
END $$;

-- Tell node n again what job j's request has (a request asked again: a restart's recovery).
CREATE FUNCTION jobd_lock_tell(j bigint, n text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT granted_at, started_at, start_step, start_attempts INTO r FROM lock_requests
     WHERE job_id = j;
    IF r.started_at IS NOT NULL THEN
        PERFORM pg_notify('jobd_locks', 'started ' || j || ' ' || n || ' ' || r.started_at
                          || ' ' || coalesce(r.start_step::text, '-') || ' '
                          || coalesce(r.start_attempts::text, '-'));
    ELSIF r.granted_at IS NOT NULL THEN
        PERFORM pg_notify('jobd_locks', 'granted ' || j || ' ' || n);
    END IF;
END $$;

-- As schema 3's, and a grant of a request that carries its start starts the job.
CREATE OR REPLACE FUNCTION jobd_lock_try(j bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    n text;
    starts boolean;
BEGIN
    SELECT node, start_job INTO n, starts FROM lock_requests
     WHERE job_id = j AND granted_at IS NULL;
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
    IF NOT (starts AND jobd_lock_start(j, n)) THEN
        PERFORM pg_notify('jobd_locks', 'granted ' || j || ' ' || n);
    END IF;
    RETURN true;
END $$;

-- Schema 3's request, with the job's start (``starts``: the grant starts the job; ``step``
-- and ``attempts``: the step attempt it begins, null for none). Asked again by the same
-- node: the start is brought up to date, the place kept, and what it holds told again.
CREATE FUNCTION jobd_lock_request(j bigint, n text, excl jsonb, shared jsonb, since float8,
                                  starts boolean, step integer, attempts integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old text;
    held boolean;
    place bigint;
BEGIN
    SELECT node, granted_at IS NOT NULL INTO old, held FROM lock_requests WHERE job_id = j;
    IF FOUND AND old = n THEN
        IF held THEN
            PERFORM jobd_lock_tell(j, n);
        ELSE
            UPDATE lock_requests SET start_job = starts, start_step = step,
                                     start_attempts = attempts
             WHERE job_id = j;
            PERFORM jobd_lock_try(j);
        END IF;
        RETURN;
    ELSIF FOUND THEN
        PERFORM jobd_lock_pass(jobd_lock_drop(j, old));
    END IF;
    place := nextval('jobd_lock_seq');
    INSERT INTO lock_requests (job_id, node, seq, since, start_job, start_step, start_attempts)
    VALUES (j, n, place, since, starts, step, attempts);
    INSERT INTO lock_assets (asset, seq, job_id, exclusive)
        SELECT a, place, j, bool_or(x) FROM (
            SELECT value, true FROM jsonb_array_elements_text(excl)
            UNION ALL SELECT value, false FROM jsonb_array_elements_text(shared)) AS t (a, x)
        GROUP BY a;
    PERFORM jobd_lock_try(j);
END $$;

-- Schema 3's lock statements, the request's start, and the two ways to put a start back.
CREATE OR REPLACE FUNCTION jobd_apply_more(s jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    CASE s ->> 0
    WHEN 'lock_request' THEN
        PERFORM jobd_lock_request((s ->> 1)::bigint, s ->> 2, s -> 3, s -> 4,
                                  (s ->> 5)::float8, coalesce((s ->> 6)::boolean, false),
                                  (s ->> 7)::integer, (s ->> 8)::integer);
    WHEN 'lock_release' THEN
        PERFORM jobd_lock_pass(jobd_lock_drop((s ->> 1)::bigint, s ->> 2));
    WHEN 'lock_withdraw' THEN
        PERFORM jobd_lock_unstart((s ->> 1)::bigint, s ->> 2);
        PERFORM jobd_lock_pass(jobd_lock_drop((s ->> 1)::bigint, s ->> 2));
    WHEN 'lock_unstart' THEN
        PERFORM jobd_lock_unstart((s ->> 1)::bigint, s ->> 2);
    WHEN 'lock_regrant' THEN
        PERFORM jobd_lock_try((s ->> 1)::bigint);
    WHEN 'lock_release_node' THEN
        PERFORM jobd_locks_release_node(s ->> 1);
    ELSE
        RETURN false;
    END CASE;
    RETURN true;
END $$;

-- A batch with lock statements in two parts: ``ahead`` (jobd_apply_bulk's grouped form, of
-- ``n`` units) for the units that need no order with the lock statements, then ``locked``
-- (jobd_apply's form) in batch order; first the advisory locks, as jobd_apply_locked takes
-- them. Until now such a batch went whole through jobd_apply's statement-by-statement loop:
-- its submissions and outcomes too (jobd.store.postgres.bulk.split says which may go
-- ahead). The answer counts the units of ``ahead`` first, then those of ``locked``.
CREATE FUNCTION jobd_apply_split(ahead jsonb, n integer, locked jsonb, assets text[],
                                 jobs bigint[], nodes text[])
RETURNS integer[] LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
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
    RETURN jobd_apply_bulk(ahead) || ARRAY(SELECT i + n FROM unnest(jobd_apply(locked)) AS i);
END $$;
