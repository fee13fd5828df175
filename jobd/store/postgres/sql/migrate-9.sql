-- jobd schema for PostgreSQL, version 9: the nodes of a cluster (SPEC §10; the Python side is
-- jobd.store.postgres.nodes).
--
-- A node is one row of ``nodes``: it joins with a new ``epoch`` (a sequence) and renews its
-- lease every third of ``lease_s``. Lease times are the SERVER's clock (jobd_now), so that
-- the nodes' own clocks never matter. ``jobs.node`` is the node that holds a job: set by the
-- transition into a held state (the claim: queued, waiting-for-lock, running,
-- cancel-requested) and kept afterwards, as "ran on".
--
-- The fencing token: every write batch of a node runs jobd_fence first, in its own
-- transaction. It takes the node's row FOR KEY SHARE and checks that the row is ``up``, has
-- the node's epoch and an unexpired lease, else the batch fails (SQLSTATE JF001) and the
-- node stops. A renewal (a plain UPDATE) does not conflict with that lock; a takeover takes
-- the row FOR UPDATE, which does: a batch and the takeover of its node never interleave.

CREATE TABLE nodes (
    name           text PRIMARY KEY,
    tags           text[]  NOT NULL DEFAULT '{}',
    workers        integer NOT NULL,
    run_queue_size integer NOT NULL,
    epoch          bigint  NOT NULL,
    started_at     double precision NOT NULL,
    renewed_at     double precision NOT NULL,   -- the server's clock, POSIX seconds
    lease_s        double precision NOT NULL,
    state          text    NOT NULL,            -- up | lost | left
    api            text,                        -- where its API listens (for people)
    pid            integer,
    host           text,
    lost_at        double precision,
    lost_by        text                         -- the node that took its jobs over
);

CREATE SEQUENCE jobd_node_epochs AS bigint MINVALUE 1;

ALTER TABLE jobs ADD COLUMN node text;
CREATE INDEX jobs_held ON jobs (node, id)
    WHERE state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested');

CREATE FUNCTION jobd_now() RETURNS double precision LANGUAGE sql VOLATILE AS $$
    SELECT extract(epoch FROM clock_timestamp())::double precision
$$;

-- Join as node n: a new epoch, state up, the lease renewed now. The active jobs that no node
-- holds (a database of a jobd before schema 9, or filled by ``jobd db copy``) go to the
-- first node that joins, under an advisory lock: exactly one node recovers them.
CREATE FUNCTION jobd_node_join(n text, tags text[], workers integer, run_queue_size integer,
                               lease double precision, api text, pid integer, host text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    e bigint := nextval('jobd_node_epochs');
    t double precision := jobd_now();
BEGIN
    INSERT INTO nodes (name, tags, workers, run_queue_size, epoch, started_at, renewed_at,
                       lease_s, state, api, pid, host)
    VALUES (n, tags, workers, run_queue_size, e, t, t, lease, 'up', api, pid, host)
    ON CONFLICT (name) DO UPDATE SET tags = EXCLUDED.tags, workers = EXCLUDED.workers,
        run_queue_size = EXCLUDED.run_queue_size, epoch = e, started_at = t, renewed_at = t,
        lease_s = EXCLUDED.lease_s, state = 'up', api = EXCLUDED.api, pid = EXCLUDED.pid,
        host = EXCLUDED.host, lost_at = NULL, lost_by = NULL;
    PERFORM pg_advisory_xact_lock(7316040);
    UPDATE jobs SET node = n
     WHERE node IS NULL AND state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested');
    RETURN e;
END $$;

-- The fencing token (see the header): true, or an error that fails the whole transaction.
CREATE FUNCTION jobd_fence(n text, e bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM nodes WHERE name = n AND epoch = e AND state = 'up'
                         AND renewed_at + lease_s > jobd_now()
        FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % (epoch %) is fenced: its lease ran out or another node took over', n, e
            USING ERRCODE = 'JF001';
    END IF;
    RETURN true;
END $$;

-- Renew node n's lease; false when it is no longer n's to renew (lost, rejoined elsewhere with
-- another epoch, or already expired: a lease that ran out is never revived).
CREATE FUNCTION jobd_node_renew(n text, e bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE nodes SET renewed_at = jobd_now()
     WHERE name = n AND epoch = e AND state = 'up' AND renewed_at + lease_s > jobd_now();
    RETURN FOUND;
END $$;

-- A node that stops: ``left``. The jobs it still holds are taken over at once (no lease wait).
CREATE FUNCTION jobd_node_leave(n text, e bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE nodes SET state = 'left' WHERE name = n AND epoch = e AND state = 'up';
    PERFORM pg_notify('jobd_nodes', 'left ' || n);
END $$;

-- Takeover by node me (which must itself hold a valid lease): every node whose lease ran out
-- (or that left still holding jobs) and that no other node is taking over right now (SKIP
-- LOCKED) is marked lost; its held jobs become me's (they are recovered by me as after a
-- restart of its own: interrupted attempts) and its asset locks go to the next waiters
-- (jobd_locks_release_node, schema 3), all in this one transaction. One row per node taken.
CREATE FUNCTION jobd_node_takeover(me text, e bigint)
RETURNS TABLE (dead_node text, job_ids bigint[]) LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    PERFORM jobd_fence(me, e);
    FOR d IN SELECT name, state FROM nodes
              WHERE name <> me
                AND ((state = 'up' AND renewed_at + lease_s <= jobd_now())
                     OR (state = 'left' AND EXISTS (SELECT FROM jobs j WHERE j.node = nodes.name
                           AND j.state IN ('queued', 'waiting-for-lock', 'running',
                                           'cancel-requested'))))
              ORDER BY name
                FOR UPDATE SKIP LOCKED LOOP
        IF d.state = 'up' THEN
            UPDATE nodes SET state = 'lost', lost_at = jobd_now(), lost_by = me
             WHERE name = d.name;
        END IF;
        dead_node := d.name;
        job_ids := ARRAY(SELECT id FROM jobs WHERE node = d.name
                           AND state IN ('queued', 'waiting-for-lock', 'running',
                                         'cancel-requested')
                         ORDER BY id);
        UPDATE jobs SET node = me WHERE id = ANY(job_ids);
        PERFORM jobd_locks_release_node(d.name);
        PERFORM pg_notify('jobd_nodes', 'lost ' || d.name || ' ' || me);
        RETURN NEXT;
    END LOOP;
END $$;

-- Claims (SPEC §10: a job runs on one node at a time). The writer connection of a node sets
-- ``jobd.node`` to its name (jobd.store.postgres.store); then a job that enters a held state
-- becomes that node's, and a transition OUT of a held state of a job another node holds
-- matches no row: the transition's guard fails (GuardFailed), exactly as if the job had
-- changed state meanwhile. A connection without ``jobd.node`` (the tests' stores, jobd db
-- copy) is not a node: nothing changes for it.
CREATE FUNCTION jobd_claim() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me text := nullif(current_setting('jobd.node', true), '');
BEGIN
    IF me IS NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.state IN ('queued', 'waiting-for-lock', 'running',
                                          'cancel-requested')
       AND OLD.node IS DISTINCT FROM me THEN
        RETURN NULL;  -- held by another node: not ours to move
    END IF;
    IF NEW.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested') THEN
        NEW.node := me;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_claim_insert BEFORE INSERT ON jobs FOR EACH ROW
    WHEN (NEW.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested'))
    EXECUTE FUNCTION jobd_claim();
CREATE TRIGGER jobs_claim_update BEFORE UPDATE OF state ON jobs FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          AND (OLD.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')
               OR NEW.state IN ('queued', 'waiting-for-lock', 'running', 'cancel-requested')))
    EXECUTE FUNCTION jobd_claim();

-- Wake the other nodes when a job may be claimed by any of them: confirmed with a due time
-- (each sets its due timer), or pending (a node with room admits it). One notification per
-- transaction and kind (NOTIFY folds equal payloads), sent at COMMIT; the payload names the
-- writing node (``jobd.node``, set by its connection) so that it skips its own.
CREATE FUNCTION jobd_due_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobd_due',
                      NEW.state || ' ' || coalesce(current_setting('jobd.node', true), ''));
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_due_insert AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.state IN ('confirmed', 'pending'))
    EXECUTE FUNCTION jobd_due_notify();
CREATE TRIGGER jobs_due_update AFTER UPDATE OF state, due_at ON jobs FOR EACH ROW
    WHEN (NEW.state IN ('confirmed', 'pending')
          AND (OLD.state IS DISTINCT FROM NEW.state OR OLD.due_at IS DISTINCT FROM NEW.due_at))
    EXECUTE FUNCTION jobd_due_notify();

-- As schema 5 does for the write functions: plans by the keys, whatever the statistics were
-- when a connection first planned them (a takeover must not scan every job).
ALTER FUNCTION jobd_node_join(text, text[], integer, integer, double precision, text, integer,
                              text)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION jobd_node_takeover(text, bigint)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
