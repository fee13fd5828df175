-- Schema 4: a set-based twin of jobd_apply for the batches of the hot path (throughput).
--
-- jobd_apply runs each statement of a batch on its own (a PL/pgSQL loop: one executor run
-- per statement, ~10 per no-op job). Most batches are only submissions (insert_job,
-- insert_step, history) and the transitions of jobs as they run (a guarded transition,
-- its history row, its step's record). jobd.store.postgres.bulk groups such a batch by
-- statement, and this function applies each group as ONE statement:
--
--   batch = {"j": [insert_job ...], "s": [insert_step ...], "t": [[unit, transition] ...],
--            "h": [[unit, history] ...], "r": [[unit, record_step] ...]}
--
-- (each statement the same ``[op, arg, ...]`` list as jobd_apply's, ``unit`` its unit's
-- index in the batch). The store sends a batch here only when the order of its statements
-- cannot matter beyond this function's own order (inserts first, then the guarded
-- transitions, then history and step records): each job is inserted at most once and
-- changed by at most one unit, after its insert. The answer is jobd_apply's: the indexes of
-- the units whose guard matched no row; their history and step records are not written.
-- Every other batch still goes through jobd_apply (or jobd_apply_locked).

CREATE FUNCTION jobd_apply_bulk(batch jsonb) RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    failed integer[];
BEGIN
    INSERT INTO jobs (id, name, workflow, state, spec, priority, start_at, end_at,
                      due_at, error, schedule, created_at, updated_at)
    SELECT (s ->> 1)::bigint, s ->> 2, s ->> 3, s ->> 4, s ->> 5,
           (s ->> 6)::integer, (s ->> 7)::float8, (s ->> 8)::float8,
           (s ->> 9)::float8, s ->> 10, s ->> 11, (s ->> 12)::float8, (s ->> 13)::float8
      FROM jsonb_array_elements(batch -> 'j') AS x(s);
    INSERT INTO steps (job_id, idx, name, action, params, state, attempts,
                       started_at, ended_at, outputs, error, timeout, retries,
                       retry_backoff, isolation, pgid)
    SELECT (s ->> 1)::bigint, (s ->> 2)::integer, s ->> 3, s ->> 4, s ->> 5,
           s ->> 6, (s ->> 7)::integer, (s ->> 8)::float8, (s ->> 9)::float8,
           s ->> 10, s ->> 11, (s ->> 12)::float8, (s ->> 13)::integer,
           (s ->> 14)::float8, s ->> 15, (s ->> 16)::integer
      FROM jsonb_array_elements(batch -> 's') AS x(s);
    WITH t AS (
        SELECT (e ->> 0)::integer AS i, e -> 1 AS s FROM jsonb_array_elements(batch -> 't') AS x(e)
    ), done AS (
        UPDATE jobs SET state = s ->> 1, updated_at = (s ->> 2)::float8,
            error = CASE WHEN (s ->> 3)::boolean THEN s ->> 4 ELSE error END,
            due_at = CASE WHEN (s ->> 5)::boolean THEN (s ->> 6)::float8 ELSE due_at END
          FROM t
         WHERE id = (s ->> 7)::bigint AND state = s ->> 8
        RETURNING t.i
    )
    SELECT coalesce(array_agg(i ORDER BY i), '{}') INTO failed
      FROM t WHERE i NOT IN (SELECT i FROM done);
    -- In batch order: history ids keep the order in which the rows were written.
    INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
    SELECT (s ->> 1)::bigint, (s ->> 2)::float8, s ->> 3, s ->> 4, s ->> 5, s ->> 6
      FROM (SELECT (e ->> 0)::integer AS i, e -> 1 AS s, n
              FROM jsonb_array_elements(batch -> 'h') WITH ORDINALITY AS x(e, n)) h
     WHERE NOT (i = ANY (failed)) ORDER BY n;
    UPDATE steps SET state = s ->> 1, attempts = (s ->> 2)::integer,
        started_at = (s ->> 3)::float8, ended_at = (s ->> 4)::float8,
        outputs = s ->> 5, error = s ->> 6, pgid = (s ->> 7)::integer
      FROM (SELECT (e ->> 0)::integer AS i, e -> 1 AS s
              FROM jsonb_array_elements(batch -> 'r') AS x(e)) r
     WHERE job_id = (s ->> 8)::bigint AND idx = (s ->> 9)::integer AND NOT (i = ANY (failed));
    RETURN failed;
END $$;
