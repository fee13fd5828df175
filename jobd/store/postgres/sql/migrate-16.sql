-- Schema 16: a locked job's move to waiting-for-lock written set-based (docs/performance.md,
-- "Asset locks on PostgreSQL and across nodes", schema 16; bench/pgreplay.py).
--
-- A job's move to waiting-for-lock goes ahead of its batch's lock statements with the other
-- transitions, in jobd_apply_bulk's set-based UPDATE (and its history row in the set-based
-- INSERT), instead of a single-row UPDATE of jobs of its own in jobd_apply's loop (each one
-- an executor set-up with the ten indexes of jobs and both trigger WHENs): its request
-- follows, and is skipped when the move's guard failed (jobd.store.postgres.bulk.divide).

-- jobd_apply_split (schema 13) with deps: for each unit of ``locked``, the index in ``ahead``
-- of the unit it depends on (-1: none); a unit whose one failed its guard is skipped whole (as
-- if it had no statement: not reported, the one it depends on is).
CREATE FUNCTION jobd_apply_split(ahead jsonb, n integer, locked jsonb, deps integer[],
                                 assets text[], jobs bigint[], nodes text[])
RETURNS integer[] LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    k integer;
    failed integer[];
BEGIN
    FOR k IN SELECT hashtext(a) FROM unnest(assets) AS a
             UNION SELECT hashtext(asset) FROM lock_assets WHERE job_id = ANY(jobs)
             UNION SELECT hashtext(la.asset) FROM lock_requests r
                     JOIN lock_assets la USING (job_id) WHERE r.node = ANY(nodes)
             ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(7316100, k);
    END LOOP;
    failed := jobd_apply_bulk(ahead);
    IF cardinality(failed) > 0 THEN
        SELECT jsonb_agg(CASE WHEN deps[o] = ANY(failed) THEN '[]'::jsonb ELSE u END ORDER BY o)
          INTO locked
          FROM jsonb_array_elements(locked) WITH ORDINALITY AS t(u, o);
    END IF;
    RETURN failed || ARRAY(SELECT i + n FROM unnest(jobd_apply(locked)) AS i);
END $$;
