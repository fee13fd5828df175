-- Schema 11: a node's own jobs move without the claim trigger's PL/pgSQL call.
--
-- The claim triggers of schema 9 (jobd_claim) ran for every job a node inserted as queued
-- and for each of its moves between held and other states (queued -> running ->
-- completed): a PL/pgSQL call per row, ~13 µs of server CPU per no-op job of 140 (replayed
-- batches, docs/performance.md). For a job the writing node already holds, the function
-- changes nothing: it refuses only a move of a job that ANOTHER node holds, and sets
-- jobs.node to the writing node. So the triggers now fire only when NEW.node is not the
-- writing node (``jobd.node``; a connection that is no node, as before, changes nothing):
-- the same rows written, the same moves refused, one C-level comparison per row instead of
-- a function call. jobd_apply_bulk's job insert names the node itself when the job enters
-- a held state, so a node's submissions skip the trigger too. The planner settings of
-- schema 5 are repeated (CREATE OR REPLACE resets them).

DROP TRIGGER jobs_claim_insert ON jobs;
CREATE TRIGGER jobs_claim_insert BEFORE INSERT ON jobs FOR EACH ROW
    WHEN (NEW.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')
          AND NEW.node IS DISTINCT FROM nullif(current_setting('jobd.node', true), ''))
    EXECUTE FUNCTION jobd_claim();
DROP TRIGGER jobs_claim_update ON jobs;
CREATE TRIGGER jobs_claim_update BEFORE UPDATE OF state ON jobs FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          AND (OLD.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')
               OR NEW.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested'))
          AND NEW.node IS DISTINCT FROM nullif(current_setting('jobd.node', true), ''))
    EXECUTE FUNCTION jobd_claim();

CREATE OR REPLACE FUNCTION jobd_apply_bulk(batch jsonb) RETURNS integer[] LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    failed integer[] := '{}';
    me text := nullif(current_setting('jobd.node', true), '');
BEGIN
    IF jsonb_array_length(batch -> 'j') > 0 THEN
    INSERT INTO jobs (id, name, workflow, state, spec, priority, start_at, end_at,
                      due_at, error, schedule, created_at, updated_at, node)
    SELECT (s ->> 1)::bigint, s ->> 2, s ->> 3, s ->> 4, s ->> 5,
           (s ->> 6)::integer, (s ->> 7)::float8, (s ->> 8)::float8,
           (s ->> 9)::float8, s ->> 10, s ->> 11, (s ->> 12)::float8, (s ->> 13)::float8,
           CASE WHEN s ->> 4 IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')
                THEN me END
      FROM jsonb_array_elements(batch -> 'j') AS x(s);
    END IF;
    IF jsonb_array_length(batch -> 's') > 0 THEN
    INSERT INTO steps (job_id, idx, name, action, params, state, attempts,
                       started_at, ended_at, outputs, error, timeout, retries,
                       retry_backoff, isolation, pgid)
    SELECT (s ->> 1)::bigint, (s ->> 2)::integer, s ->> 3, s ->> 4, s ->> 5,
           s ->> 6, (s ->> 7)::integer, (s ->> 8)::float8, (s ->> 9)::float8,
           s ->> 10, s ->> 11, (s ->> 12)::float8, (s ->> 13)::integer,
           (s ->> 14)::float8, s ->> 15, (s ->> 16)::integer
      FROM jsonb_array_elements(batch -> 's') AS x(s);
    END IF;
    IF jsonb_array_length(batch -> 't') > 0 THEN
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
    END IF;
    IF jsonb_array_length(batch -> 'h') > 0 THEN
    -- In batch order: history ids keep the order in which the rows were written.
    INSERT INTO history (job_id, at, from_state, to_state, cause, actor)
    SELECT (s ->> 1)::bigint, (s ->> 2)::float8, s ->> 3, s ->> 4, s ->> 5, s ->> 6
      FROM (SELECT (e ->> 0)::integer AS i, e -> 1 AS s, n
              FROM jsonb_array_elements(batch -> 'h') WITH ORDINALITY AS x(e, n)) h
     WHERE NOT (i = ANY (failed)) ORDER BY n;
    END IF;
    IF jsonb_array_length(batch -> 'r') > 0 THEN
    UPDATE steps SET state = s ->> 1, attempts = (s ->> 2)::integer,
        started_at = (s ->> 3)::float8, ended_at = (s ->> 4)::float8,
        outputs = s ->> 5, error = s ->> 6, pgid = (s ->> 7)::integer
      FROM (SELECT (e ->> 0)::integer AS i, e -> 1 AS s
              FROM jsonb_array_elements(batch -> 'r') AS x(e)) r
     WHERE job_id = (s ->> 8)::bigint AND idx = (s ->> 9)::integer AND NOT (i = ANY (failed));
    END IF;
    RETURN failed;
END $$;
