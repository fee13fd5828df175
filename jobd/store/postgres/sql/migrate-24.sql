-- Schema 24: a batch's lock requests are written in time linear in their number
-- (docs/performance.md, "A waiter asks without its worker", session 16).
--
-- jobd_lock_request_many (schema 21, restated in 22) wrote the requests, then their assets
-- joined to the requests' new rows to find each one's seq: a join of two CTEs, which has no
-- index, and the batch functions run with hash and merge joins off (schema 5: every
-- statement reads by key), so it was a nested loop over every pair. With 63 requests a
-- batch (one per worker, as before session 16) that was 4,000 pairs; with a run queue's
-- waiters asking at once (512 a batch in bench.pg) 262,144, 50 ms of a 100 ms batch. The
-- seq is now taken once per request in the first CTE (MATERIALIZED: its rows, and so its
-- nextval calls, are computed once, in the batch's order as before) and each asset row
-- carries it from there: no join. Everything else in the function is schema 22's.

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
    WITH e AS MATERIALIZED (  -- each request's seq taken here, once, in the batch's order
        SELECT (x ->> 1)::bigint AS j, x ->> 2 AS n, x -> 3 AS excl, x -> 4 AS shared,
               (x ->> 5)::float8 AS since, coalesce((x ->> 6)::boolean, false) AS starts,
               (x ->> 7)::integer AS step, (x ->> 8)::integer AS attempts,
               nextval('jobd_lock_seq') AS seq
          FROM (SELECT t.x -> 0 AS x FROM jsonb_array_elements(batch) WITH ORDINALITY AS t (x, o)
                 WHERE o - 1 BETWEEN a AND b ORDER BY o) AS u
    ), req AS (
        INSERT INTO lock_requests (job_id, node, seq, since, start_job, start_step,
                                   start_attempts)
        SELECT j, n, seq, since, starts, step, attempts FROM e
    ), k AS (
        SELECT e.j, e.seq, t.asset, bool_or(t.x) AS exclusive
          FROM e CROSS JOIN LATERAL (
              SELECT value, true FROM jsonb_array_elements_text(e.excl)
              UNION ALL SELECT value, false FROM jsonb_array_elements_text(e.shared))
              AS t (asset, x)
         GROUP BY e.j, e.seq, t.asset
    )
    INSERT INTO lock_assets (asset, seq, job_id, exclusive)
    SELECT k.asset, k.seq, k.j, k.exclusive FROM k;
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

