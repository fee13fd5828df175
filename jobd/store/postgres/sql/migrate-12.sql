-- jobd schema 12: the list filters' time ranges and searches read by index (issue 11 item 3).
--
-- A time range: jobs_by_time held the time alone, so a page of a range in id order was
-- either the whole range read and sorted (70,000 entries for a day of 1,000,000 jobs) or
-- the primary key walked from the newest job, checking the time on each (930,000 rows for
-- the first day). jobs_by_hour holds each hour's jobs in id order instead, so each hour
-- gives its newest ids at once (jobd/store/postgres/hours.py, as the SQLite store's
-- schema 4). It replaces jobs_by_time, which nothing else read: a range of times is also
-- an index range of hours, and the jobs table keeps its number of indexes (every index
-- gets an entry at each of a job's state changes, which are not HOT updates).
-- The expression must stay as written: queries.HOUR repeats it so that the planner uses
-- the index, and Python's math.floor(t / 3600) computes the same hour.
DROP INDEX jobs_by_time;
CREATE INDEX jobs_by_hour ON jobs ((floor(coalesce(start_at, created_at) / 3600)::bigint), id);

-- A search: the name as shown (name, else <workflow>-<id>) in a table of its own with a
-- trigram index (pg_trgm's GIN operator class serves ILIKE '%text%'). A table of its own,
-- not an index on jobs: a GIN entry per state change of every job would cost the hot path
-- some ten trigram entries a change; job_names is written once per job, by statement
-- triggers (one call per INSERT or DELETE statement, not per row: a group-commit batch's
-- bulk insert is one statement), and again only when an edit changes the name.
-- pg_trgm is a trusted extension: the database's owner (or a role with CREATE on the
-- database) may create it without being a superuser (docs/operations.md).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE job_names (
    job_id bigint PRIMARY KEY,
    name   text   NOT NULL
);
INSERT INTO job_names (job_id, name) SELECT id, coalesce(name, workflow || '-' || id) FROM jobs;
CREATE INDEX job_names_trigrams ON job_names USING gin (name gin_trgm_ops);

CREATE FUNCTION jobd_names_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_names (job_id, name)
        SELECT id, coalesce(name, workflow || '-' || id) FROM new_jobs;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_names_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobd_names_insert();

CREATE FUNCTION jobd_names_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_names n USING old_jobs o WHERE n.job_id = o.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_names_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobd_names_delete();

-- An edit (redefine_job) sets the name; a job's workflow and id never change.
CREATE FUNCTION jobd_names_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_names SET name = coalesce(NEW.name, NEW.workflow || '-' || NEW.id)
     WHERE job_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_names_update AFTER UPDATE OF name, workflow ON jobs FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.workflow IS DISTINCT FROM NEW.workflow)
    EXECUTE FUNCTION jobd_names_update();
