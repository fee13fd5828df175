-- Schema 20: the list filters' workflow and time indexes on job_names, not on jobs (issue 13;
-- docs/performance.md, "Asset locks on PostgreSQL and across nodes", schema 20;
-- bench/pgreplay.py).
--
-- No UPDATE of a job's state is a HOT update (state is in jobs_by_state and in the partial
-- indexes' predicates), so every index of jobs gets an entry at each state change: a plain
-- job's running and completed, a locked job's waiting-for-lock too. jobs_by_workflow
-- (workflow, id) and jobs_by_hour (the hour of coalesce(start_at, created_at), id) were two of
-- them, yet what they index is fixed when the job is stored (a job's workflow never changes;
-- its start_at only by an edit). job_names, written once per job by statement triggers
-- (schema 12), now carries the workflow and that time, and the two indexes are on it: an entry
-- each once per job, not at every state change. The list filters read a workflow's or a time
-- range's ids from job_names and join the jobs by primary key
-- (jobd/store/postgres/filters.py, hours.py).
--
-- job_names is rebuilt from jobs (it holds nothing else: a name as shown, coalesce(name,
-- workflow || '-' || id)), which is quicker than updating each row of its trigram index.
DROP TABLE job_names;
CREATE TABLE job_names (
    job_id   bigint PRIMARY KEY,
    name     text   NOT NULL,
    workflow text   NOT NULL,
    -- coalesce(start_at, created_at) of the job: the time the list filters' ranges read.
    at_time  double precision NOT NULL
);
INSERT INTO job_names (job_id, name, workflow, at_time)
    SELECT id, coalesce(name, workflow || '-' || id), workflow, coalesce(start_at, created_at)
      FROM jobs;
CREATE INDEX job_names_trigrams ON job_names USING gin (name gin_trgm_ops);
CREATE INDEX job_names_by_workflow ON job_names (workflow, job_id);
-- The expression must stay as written: queries.HOUR repeats it so that the planner uses the
-- index, and Python's math.floor(t / 3600) computes the same hour.
CREATE INDEX job_names_by_hour ON job_names ((floor(at_time / 3600)::bigint), job_id);
DROP INDEX jobs_by_workflow;
DROP INDEX jobs_by_hour;

CREATE OR REPLACE FUNCTION jobd_names_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_names (job_id, name, workflow, at_time)
        SELECT id, coalesce(name, workflow || '-' || id), workflow, coalesce(start_at, created_at)
          FROM new_jobs;
    RETURN NULL;
END $$;

-- An edit (redefine_job) sets the name and the start; a job's workflow and id never change
-- (kept here all the same). No state change names these columns, so the trigger is not even
-- looked at by the hot path's UPDATEs.
CREATE OR REPLACE FUNCTION jobd_names_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_names SET name = coalesce(NEW.name, NEW.workflow || '-' || NEW.id),
                         workflow = NEW.workflow,
                         at_time = coalesce(NEW.start_at, NEW.created_at)
     WHERE job_id = NEW.id;
    RETURN NULL;
END $$;
DROP TRIGGER jobs_names_update ON jobs;
CREATE TRIGGER jobs_names_update AFTER UPDATE OF name, workflow, start_at, created_at ON jobs
    FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.workflow IS DISTINCT FROM NEW.workflow
          OR OLD.start_at IS DISTINCT FROM NEW.start_at
          OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION jobd_names_update();

ANALYZE job_names;
