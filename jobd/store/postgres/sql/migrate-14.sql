-- Schema 14: fewer statements per lock grant and per locked submit (docs/performance.md,
-- "PostgreSQL (issue 13)"). The same rows are written, in the same transactions; only the
-- statements that write them are fewer (each PL/pgSQL statement is an executor run of its
-- own: ~10-40 µs of server CPU each, before its rows).
--
-- - jobd_lock_try reads the request's start with its node (one SELECT), checks the grant
--   inline (no call of jobd_lock_grantable), and writes the request's grant, start and undo
--   in ONE UPDATE of lock_requests, after the start.
-- - jobd_lock_start gets the step and attempts from its caller, reads the old values of the
--   job and of the step in the UPDATE that changes them (a self-join on the locked row), and
--   sets ``jobd.node`` only when the job's holder is not the writing node (on one node, or
--   for a node's own waiter, never). It answers the undo (null: not started) instead of
--   writing it.
-- - jobd_lock_pass finds an asset's candidates in one statement (none when an exclusive
--   holder remains; else the waiters up to and including the first exclusive one).
-- - jobd_job_keys parses the job's spec once, not four times.
-- - jobs_claim_update's WHEN is shorter: a trigger's WHEN is read from its stored text
--   (stringToNode) and prepared once per STATEMENT, and schema 11's, with its two arrays,
--   was 3,700 characters: ~100,000 instructions of every UPDATE of a job's state, most of
--   the cost of a one-row UPDATE such as a grant's start (callgrind). The node's test comes
--   first, as a C-level comparison; the state test, for another node's job only, is a
--   function call (jobd_held_move: the same test as before).

CREATE FUNCTION jobd_lock_start(j bigint, n text, s integer, a integer, t double precision)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    me text := current_setting('jobd.node', true);
    prev double precision;
    holder text;
    h bigint;
    st record;
BEGIN
    UPDATE jobs AS x SET state = 'running', updated_at = t
      FROM (SELECT id, updated_at FROM jobs
             WHERE id = j AND state = 'waiting-for-lock' AND node = me FOR UPDATE) AS o
     WHERE x.id = o.id
    RETURNING o.updated_at INTO prev;
    IF NOT FOUND THEN
        -- Not the writing node's job (or not waiting): as schema 13 did it.
        SELECT updated_at, node INTO prev, holder FROM jobs
         WHERE id = j AND state = 'waiting-for-lock' FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        -- As the node that holds the job (the claim trigger lets no other move it).
        PERFORM set_config('jobd.node', coalesce(holder, ''), true);
        UPDATE jobs SET state = 'running', updated_at = t WHERE id = j;
        PERFORM set_config('jobd.node', coalesce(me, ''), true);
    END IF;
    INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
    VALUES (j, t, 'waiting-for-lock', 'running', 'lock granted', 'scheduler')
    RETURNING id INTO h;
    PERFORM pg_notify('jobd_locks', 'started ' || j || ' ' || n || ' ' || t || ' '
                      || coalesce(s::text, '-') || ' ' || coalesce(a::text, '-'));
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

CREATE OR REPLACE FUNCTION jobd_lock_try(j bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r record;
    t double precision;
    u jsonb;
BEGIN
    SELECT node, start_job, start_step, start_attempts INTO r FROM lock_requests
     WHERE job_id = j AND granted_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM lock_assets
                WHERE job_id = j AND NOT pg_try_advisory_xact_lock(7316100, hashtext(asset)))
    THEN
        PERFORM pg_notify('jobd_locks', 'recheck ' || j || ' ' || r.node);
        RETURN false;
    END IF;
    IF EXISTS (  -- not grantable: jobd_lock_grantable's test
        SELECT FROM lock_assets q
         WHERE q.job_id = j
           AND (EXISTS (SELECT FROM lock_assets h
                         WHERE h.asset = q.asset AND h.held AND (h.exclusive OR q.exclusive))
                OR EXISTS (SELECT FROM lock_assets w
                            WHERE w.asset = q.asset AND NOT w.held AND w.seq < q.seq
                              AND (w.exclusive OR q.exclusive))))
    THEN
        RETURN false;
    END IF;
    UPDATE lock_assets SET held = true WHERE job_id = j;
    t := jobd_now();
    IF r.start_job THEN
        u := jobd_lock_start(j, r.node, r.start_step, r.start_attempts, t);
    END IF;
    UPDATE lock_requests
       SET granted_at = t,
           started_at = CASE WHEN u IS NULL THEN started_at ELSE t END,
           undo = coalesce(u, undo)
     WHERE job_id = j;
    IF u IS NULL THEN
        PERFORM pg_notify('jobd_locks', 'granted ' || j || ' ' || r.node);
    END IF;
    RETURN true;
END $$;

DROP FUNCTION jobd_lock_start(bigint, text);

CREATE OR REPLACE FUNCTION jobd_lock_pass(assets text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a text;
    candidates bigint[] := '{}';
    c bigint;
BEGIN
    FOREACH a IN ARRAY assets LOOP
        candidates := candidates || ARRAY(
            SELECT w.job_id FROM lock_assets w
             WHERE w.asset = a AND NOT w.held
               AND w.seq <= coalesce((SELECT x.seq FROM lock_assets x
                                       WHERE x.asset = a AND NOT x.held AND x.exclusive
                                       ORDER BY x.seq LIMIT 1), 9223372036854775807)
               AND NOT EXISTS (SELECT FROM lock_assets h
                                WHERE h.asset = a AND h.held AND h.exclusive));
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

CREATE OR REPLACE FUNCTION jobd_job_keys() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sp jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM job_keys WHERE job_id = OLD.id;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    sp := NEW.spec::jsonb;
    INSERT INTO job_keys (kind, key, job_id)
        SELECT 'asset', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(sp -> 'assets', '[]'))
        UNION SELECT 'asset', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(sp -> 'shared_assets', '[]'))
        UNION SELECT 'resource', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(sp -> 'resources', '[]'))
        UNION SELECT 'resource', value, NEW.id
          FROM jsonb_array_elements_text(coalesce(sp -> 'pools', '[]'))
        UNION SELECT 'resource', resource, job_id FROM reservations WHERE job_id = NEW.id
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;

-- Whether a move from state o to state n enters or leaves a held state (schema 9's test).
CREATE FUNCTION jobd_held_move(o text, n text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN o IS DISTINCT FROM n
       AND (o IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')
            OR n IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested'));
END $$;

DROP TRIGGER jobs_claim_update ON jobs;
CREATE TRIGGER jobs_claim_update BEFORE UPDATE OF state ON jobs FOR EACH ROW
    WHEN (NEW.node IS DISTINCT FROM nullif(current_setting('jobd.node', true), '')
          AND jobd_held_move(OLD.state, NEW.state))
    EXECUTE FUNCTION jobd_claim();
