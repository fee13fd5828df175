-- Schema 17: fewer index entries per job (docs/performance.md, "Asset locks on
-- PostgreSQL and across nodes", schema 17; bench/pgreplay.py). Every read of history goes by
-- job (history_by_job: a job's rows in id order, the highest job id ever used); nothing reads a
-- row by its id alone but a grant's undo, which now names the job too. So the primary key on
-- id, an index entry of every history row (three to four a job), goes; the ids stay unique by
-- their sequence (nothing writes an id of its own: jobd db copy appends rows as a node does).
-- And a fillfactor for the two tables whose rows are updated in place (below).

ALTER TABLE history DROP CONSTRAINT history_pkey;

-- Room on each page for the new versions of its rows: a step's record (running, then its end)
-- and a lock request's grant and start change no indexed column, so with room on the page
-- they are HOT updates (no new index entry). Pages written from now on; the rows already
-- stored keep theirs.
ALTER TABLE steps SET (fillfactor = 60);
ALTER TABLE lock_requests SET (fillfactor = 60);

-- As schema 13's, the history row found by its job and id.
CREATE OR REPLACE FUNCTION jobd_lock_unstart(j bigint, n text) RETURNS void LANGUAGE plpgsql AS $$
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
        DELETE FROM history WHERE job_id = j AND id = (u ->> 1)::bigint;
        IF s IS NOT NULL THEN
            UPDATE steps SET state = u ->> 2, attempts = (u ->> 3)::integer,
                             started_at = (u ->> 4)::float8, ended_at = (u ->> 5)::float8,
                             error = u ->> 6
             WHERE job_id = j AND idx = s;
        END IF;
    END IF;
    UPDATE lock_requests SET started_at = NULL, undo = NULL WHERE job_id = j;
END $$;
