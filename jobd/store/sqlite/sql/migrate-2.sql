-- jobd schema, version 2: what the list filters (GET /v1/jobs, POST /v1/batch/{operation})
-- and schedule pausing need. Applied after schema.sql to a new database, and by itself to a
-- database of version 1 (the INSERT ... SELECT statements fill the new tables from its jobs).
-- Triggers keep the tables in step, so no write path of the daemon has to.

-- The assets (exclusive and shared) and resources (asked for, pools asked for, and every
-- resource a reservation was ever made on) of each job: `?asset=` and `?resource=`.
CREATE TABLE job_keys (
    kind   TEXT    NOT NULL,                 -- 'asset' | 'resource'
    key    TEXT    NOT NULL,
    job_id INTEGER NOT NULL,
    PRIMARY KEY (kind, key, job_id)
) WITHOUT ROWID;
CREATE INDEX job_keys_by_job ON job_keys (job_id);

-- The name as shown (the name given, else <workflow>-<id>), in trigrams: `?search=`.
CREATE VIRTUAL TABLE job_names USING fts5 (name, tokenize = 'trigram', content = '');

CREATE INDEX jobs_by_workflow ON jobs (workflow, id);
-- `?since=` / `?until=`: on start_at, else created_at.
CREATE INDEX jobs_by_time ON jobs (coalesce(start_at, created_at));

CREATE TRIGGER jobs_filter_insert AFTER INSERT ON jobs BEGIN
    INSERT OR IGNORE INTO job_keys (kind, key, job_id)
        SELECT 'asset', value, new.id FROM json_each(new.spec, '$.assets')
        UNION ALL SELECT 'asset', value, new.id FROM json_each(new.spec, '$.shared_assets')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.resources')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.pools');
    INSERT INTO job_names (rowid, name)
        VALUES (new.id, coalesce(new.name, new.workflow || '-' || new.id));
END;

CREATE TRIGGER jobs_filter_edit AFTER UPDATE OF spec ON jobs BEGIN
    DELETE FROM job_keys WHERE job_id = new.id;
    INSERT OR IGNORE INTO job_keys (kind, key, job_id)
        SELECT 'asset', value, new.id FROM json_each(new.spec, '$.assets')
        UNION ALL SELECT 'asset', value, new.id FROM json_each(new.spec, '$.shared_assets')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.resources')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.pools')
        UNION ALL SELECT 'resource', resource, job_id FROM reservations WHERE job_id = new.id;
END;

CREATE TRIGGER jobs_filter_rename AFTER UPDATE OF name ON jobs
WHEN old.name IS NOT new.name BEGIN
    INSERT INTO job_names (job_names, rowid, name)
        VALUES ('delete', old.id, coalesce(old.name, old.workflow || '-' || old.id));
    INSERT INTO job_names (rowid, name)
        VALUES (new.id, coalesce(new.name, new.workflow || '-' || new.id));
END;

CREATE TRIGGER jobs_filter_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM job_keys WHERE job_id = old.id;
    INSERT INTO job_names (job_names, rowid, name)
        VALUES ('delete', old.id, coalesce(old.name, old.workflow || '-' || old.id));
END;

CREATE TRIGGER reservations_filter_insert AFTER INSERT ON reservations BEGIN
    INSERT OR IGNORE INTO job_keys (kind, key, job_id) VALUES ('resource', new.resource, new.job_id);
END;

-- A paused schedule does not fire (POST /v1/schedules/{name}/pause); NULL: not paused.
ALTER TABLE schedules ADD COLUMN paused_at REAL;

INSERT OR IGNORE INTO job_keys (kind, key, job_id)
    SELECT 'asset', value, jobs.id FROM jobs, json_each(jobs.spec, '$.assets')
    UNION ALL SELECT 'asset', value, jobs.id FROM jobs, json_each(jobs.spec, '$.shared_assets')
    UNION ALL SELECT 'resource', value, jobs.id FROM jobs, json_each(jobs.spec, '$.resources')
    UNION ALL SELECT 'resource', value, jobs.id FROM jobs, json_each(jobs.spec, '$.pools')
    UNION ALL SELECT 'resource', resource, job_id FROM reservations;
INSERT INTO job_names (rowid, name)
    SELECT id, coalesce(name, workflow || '-' || id) FROM jobs;
