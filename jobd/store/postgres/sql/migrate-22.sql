-- Schema 22: a lock notification goes to the channel of the node it is for, not to every
-- node (docs/performance.md, "Each node hears its own lock grants", schema 22).
--
-- Before, every grant, start and recheck was NOTIFYed on the one channel ``jobd_locks``, and
-- every node's listener received all of them and dropped those for other nodes: with N nodes
-- each notification was sent N times and parsed N times, so a node's listening cost grew
-- with the size of the cluster, not with its own work (three nodes each locking: the relay
-- of others' grants was a fifth of a node's busy time). Now each is sent on
-- ``jobd_lock_channel(node)``: ``jobd_locks_`` and the first 16 hex digits of the md5 of the
-- node's name (a channel name has at most 63 bytes; a node name may be longer). The payload
-- is unchanged (``<kind> <job> <node> ...``, the node always its third word: node names
-- have no blanks). The Python side computes the same name (``queries.lock_channel``).
--
-- The functions below are their latest definitions (schemas 13, 18 and 21) with each
-- ``pg_notify('jobd_locks', p)`` turned into ``jobd_lock_notify(p)``, and nothing else changed
-- (tests/test_postgres_schema22.py compares them). Nodes of an earlier version, still
-- LISTENing on ``jobd_locks``, find their grants by their poll (every 5 s) until they are
-- upgraded: upgrade every node of a cluster together (docs/operations.md).

CREATE FUNCTION jobd_lock_channel(node text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'jobd_locks_' || left(md5(node), 16)
$$;

-- NOTIFY the node that payload p is for (its third word) on that node's channel.
CREATE FUNCTION jobd_lock_notify(p text) RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT pg_notify(jobd_lock_channel(split_part(p, ' ', 3)), p)
$$;

-- jobd_lock_tell: as schema 13's, NOTIFYing the requesting node's channel.
CREATE OR REPLACE FUNCTION jobd_lock_tell(j bigint, n text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT granted_at, started_at, start_step, start_attempts INTO r FROM lock_requests
     WHERE job_id = j;
    IF r.started_at IS NOT NULL THEN
        PERFORM jobd_lock_notify('started ' || j || ' ' || n || ' ' || r.started_at
                          || ' ' || coalesce(r.start_step::text, '-') || ' '
                          || coalesce(r.start_attempts::text, '-'));
    ELSIF r.granted_at IS NOT NULL THEN
        PERFORM jobd_lock_notify('granted ' || j || ' ' || n);
    END IF;
END $$;

-- jobd_lock_start: as schema 18's, NOTIFYing the requesting node's channel.
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
    sent := jobd_lock_notify('started ' || j || ' ' || n || ' ' || t || ' '
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

-- jobd_lock_try: as schema 18's, NOTIFYing the requesting node's channel.
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
        sent := jobd_lock_notify('recheck ' || j || ' ' || r.node) IS NULL;
        RETURN false;
    ELSIF NOT r.granted THEN
        RETURN false;
    END IF;
    t := jobd_now();
    IF NOT r.start_job THEN
        UPDATE lock_requests SET granted_at = t WHERE job_id = j;
        sent := jobd_lock_notify('granted ' || j || ' ' || r.node) IS NULL;
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
            sent := jobd_lock_notify('granted ' || j || ' ' || r.node) IS NULL;
            RETURN true;
        END IF;
        UPDATE lock_requests SET started_at = t, undo = u WHERE job_id = j;
        RETURN true;  -- jobd_lock_start sent ``started``
    END IF;
    sent := jobd_lock_notify('started ' || j || ' ' || r.node || ' ' || t || ' '
                      || coalesce(r.start_step::text, '-') || ' '
                      || coalesce(r.start_attempts::text, '-')) IS NULL;
    RETURN true;
END $$;

-- jobd_lock_request: as schema 18's, NOTIFYing the requesting node's channel.
CREATE OR REPLACE FUNCTION jobd_lock_request(j bigint, n text, excl jsonb, shared jsonb, since float8,
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
            sent := jobd_lock_notify('recheck ' || j || ' ' || n) IS NULL;
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

-- jobd_lock_start_many: as schema 21's, NOTIFYing the requesting node's channel.
CREATE OR REPLACE FUNCTION jobd_lock_start_many(ids bigint[], holder text, t double precision)
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
           count(jobd_lock_notify('started ' || q.job_id || ' ' || q.node || ' ' || t
                           || ' ' || coalesce(q.start_step::text, '-') || ' '
                           || coalesce(q.start_attempts::text, '-')))
      INTO started, told
      FROM undo JOIN q ON q.job_id = undo.id;
    RETURN coalesce(started, '{}');
END $$;

-- jobd_lock_request_many: as schema 21's, NOTIFYing the requesting node's channel.
CREATE OR REPLACE FUNCTION jobd_lock_request_many(batch jsonb, a integer, b integer) RETURNS void
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
            sent := jobd_lock_notify('recheck ' || r.job_id || ' ' || r.node) IS NULL;
        ELSIF r.grantable THEN
            sent := jobd_lock_try(r.job_id);
        END IF;
    END LOOP;
END $$;

-- jobd_lock_release_many: as schema 21's, NOTIFYing the requesting node's channel.
CREATE OR REPLACE FUNCTION jobd_lock_release_many(js bigint[], ns text[]) RETURNS void
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
                        THEN (jobd_lock_notify('granted ' || job_id || ' ' || node)
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
                    sent := jobd_lock_notify('granted ' || c || ' ' || r.node) IS NULL;
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
