-- Schema 15: less server work per locked job (docs/performance.md, "Asset locks on
-- PostgreSQL and across nodes", schema 15). The same rows are written, in the same
-- transactions; what changes is how many executor runs write them (callgrind of a replay of
-- the writer's own statements: bench/pgreplay.py).
--
-- - A new job's job_keys rows (its assets and resources, for the list filters) are written
--   by ONE statement per INSERT of jobs, from its transition table, not by a PL/pgSQL call
--   per row: the per-row trigger planned and started a five-way UNION with a hash aggregate
--   for each locked job (~230,000 instructions a job, 7 % of a locked job's server work).
--   A row's reservations need no look-up here: a reservation's own trigger writes its key
--   (reservations_keys), whichever comes first. An edit of the spec and a delete keep the
--   per-row trigger (jobs_keys).
-- - jobd_lock_request writes the one asset of a request for one exclusive asset (the common
--   case) with a VALUES insert, not through the aggregate over a UNION ALL of two JSON
--   arrays (an executor set-up of ~50,000 instructions per request).
-- - jobs_due_update fires on UPDATE OF due_at only (it was: OF state, due_at), with the same
--   WHEN. A trigger's WHEN is read from its stored text and prepared once per statement
--   (stringToNode: this one is 1,547 characters, ~45,000 instructions), unless the trigger's
--   columns are not in the statement's SET list, which is tested first. Every statement that
--   may move a job into confirmed or pending names due_at (a transition's, jobd_apply's and
--   jobd_apply_bulk's, sets it or keeps it; queries.TRANSITION_MANY keeps it: due_at =
--   due_at); those that never do (a grant's start to running, its undo to waiting-for-lock)
--   no longer pay for the test. A new UPDATE of jobs.state that may lead into confirmed or
--   pending must name due_at too (tests/test_postgres_schema15.py checks the ones there are).

CREATE FUNCTION jobd_keys_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_keys (kind, key, job_id)
        SELECT CASE WHEN k.field IN ('assets', 'shared_assets') THEN 'asset'
                    ELSE 'resource' END,
               k.value, n.id
          FROM new_jobs n
          CROSS JOIN LATERAL (SELECT n.spec::jsonb AS sp) s
          CROSS JOIN LATERAL (
              SELECT f.field, v.value
                FROM unnest(ARRAY['assets', 'shared_assets', 'resources', 'pools']) AS f(field)
                CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(s.sp -> f.field, '[]')) AS v
          ) k
         WHERE n.spec ~ '"(assets|shared_assets|resources|pools)"'
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

DROP TRIGGER jobs_keys_insert ON jobs;
CREATE TRIGGER jobs_keys_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobd_keys_insert();

CREATE OR REPLACE FUNCTION jobd_lock_request(j bigint, n text, excl jsonb, shared jsonb,
                                             since float8, starts boolean, step integer,
                                             attempts integer)
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
    IF jsonb_array_length(excl) = 1 AND jsonb_array_length(shared) = 0 THEN
        INSERT INTO lock_assets (asset, seq, job_id, exclusive)
        VALUES (excl ->> 0, place, j, true);
    ELSE
        INSERT INTO lock_assets (asset, seq, job_id, exclusive)
            SELECT a, place, j, bool_or(x) FROM (
                SELECT value, true FROM jsonb_array_elements_text(excl)
                UNION ALL SELECT value, false FROM jsonb_array_elements_text(shared)) AS t (a, x)
            GROUP BY a;
    END IF;
    PERFORM jobd_lock_try(j);
END $$;

DROP TRIGGER jobs_due_update ON jobs;
CREATE TRIGGER jobs_due_update AFTER UPDATE OF due_at ON jobs FOR EACH ROW
    WHEN (NEW.state IN ('confirmed', 'pending')
          AND (OLD.state IS DISTINCT FROM NEW.state OR OLD.due_at IS DISTINCT FROM NEW.due_at))
    EXECUTE FUNCTION jobd_due_notify();
