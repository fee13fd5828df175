-- Schema 25: a lock request's start is told to its node only while it stands.
--
-- The grant of a waiter writes its start (schema 13: the job ``running``, its step's attempt
-- begun) and NOTIFYs ``started``; the node runs the step with nothing more to write. A start
-- stops standing when recovery interrupts that run (a restart, or a takeover's: the job goes
-- back to ``confirmed``, then ``queued``) while the request stays granted. Asked again, the
-- database answered with that start (jobd_lock_tell), and so did a node's fallback poll
-- (queries.NODE_STARTS): the node ran the step without a ``running`` in the store, its
-- outcome was refused, and the job stayed ``waiting-for-lock`` (session 16, bench.chaos).
-- A start is now told only while its job is ``running`` as that node; otherwise the grant
-- is told (``granted``), and the node writes the job's ``running`` itself.
CREATE OR REPLACE FUNCTION jobd_lock_tell(j bigint, n text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT q.granted_at, q.started_at, q.start_step, q.start_attempts,
           EXISTS (SELECT FROM jobs x WHERE x.id = j AND x.state = 'running' AND x.node = n)
               AS stands
      INTO r FROM lock_requests q WHERE q.job_id = j;
    IF r.started_at IS NOT NULL AND r.stands THEN
        PERFORM jobd_lock_notify('started ' || j || ' ' || n || ' ' || r.started_at
                          || ' ' || coalesce(r.start_step::text, '-') || ' '
                          || coalesce(r.start_attempts::text, '-'));
    ELSIF r.granted_at IS NOT NULL THEN
        PERFORM jobd_lock_notify('granted ' || j || ' ' || n);
    END IF;
END $$;
