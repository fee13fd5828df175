-- Schema 10: a takeover keeps the dead node's lock waiters in their places (SPEC §3.4, §10).
--
-- jobd_node_takeover (schema 9) gives the dead node's jobs to the node taking over
-- (jobs.node = me) and then calls jobd_locks_release_node(dead). Until now that dropped
-- every request of the dead node, so its waiters asked again at the end of their queues.
-- Now a WAITING request whose job has moved to another node becomes that node's request,
-- in the same place; that node's recovery asks again for it (jobd_lock_request keeps the
-- place of a request of the same node). Held requests are dropped as before (the holder's
-- run was interrupted), and their assets go to the next waiters, NOTIFYing their nodes.
CREATE OR REPLACE FUNCTION jobd_locks_release_node(n text) RETURNS bigint[]
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    k integer;
    jobs_of bigint[];
    j bigint;
    dropped text[] := '{}';
BEGIN
    FOR k IN SELECT DISTINCT hashtext(la.asset) FROM lock_requests r
               JOIN lock_assets la USING (job_id) WHERE r.node = n ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(7316100, k);
    END LOOP;
    SELECT array_agg(job_id ORDER BY seq) INTO jobs_of FROM lock_requests WHERE node = n;
    UPDATE lock_requests r SET node = j2.node
      FROM jobs j2
     WHERE r.node = n AND r.granted_at IS NULL AND j2.id = r.job_id
       AND j2.node IS NOT NULL AND j2.node <> n;
    FOREACH j IN ARRAY coalesce(jobs_of, '{}') LOOP
        dropped := dropped || jobd_lock_drop(j, n);
    END LOOP;
    PERFORM jobd_lock_pass(ARRAY(SELECT DISTINCT unnest(dropped)));
    RETURN coalesce(jobs_of, '{}');
END $$;
