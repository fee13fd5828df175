-- Schema 2: job ids from the database, so that the nodes of a cluster never pick the same id.
-- A node takes a block of ids at a time (jobd_take_ids) and hands them out from memory: ids
-- are unique across nodes, but not ordered by submission across nodes.

CREATE SEQUENCE jobd_job_ids AS bigint MINVALUE 1;

-- The first of ``n`` fresh consecutive ids. Serialised by an advisory lock, and never below
-- an id a job already has: a database filled by ``jobd db copy`` (which writes its ids as
-- they were) or by a jobd before schema 2 goes on after its highest id.
CREATE FUNCTION jobd_take_ids(n integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
    first bigint;
BEGIN
    IF n < 1 THEN
        RAISE EXCEPTION 'jobd_take_ids: n must be at least 1, not %', n;
    END IF;
    PERFORM pg_advisory_xact_lock(7316023);
    top := greatest((SELECT max(id) FROM jobs), (SELECT max(job_id) FROM history), 0);
    first := nextval('jobd_job_ids');
    IF first <= top THEN
        first := top + 1;
    END IF;
    PERFORM setval('jobd_job_ids', first + n - 1);
    RETURN first;
END $$;
