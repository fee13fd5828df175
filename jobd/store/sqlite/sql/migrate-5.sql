-- jobd schema, version 5: the trigram index of names (`job_names`, `?search=`) is filled
-- once per transaction instead of by a trigger on every inserted job.
--
-- Why: a statement that writes an FTS5 table opens a savepoint on it, and FTS5 writes its
-- pending terms to disk at every savepoint, so one INSERT into `jobs` per job made one
-- small index segment per job (and the merges of those segments): 17 of the 26 µs an
-- inserted job cost the writer. Now the insert trigger only appends the job's id to
-- `job_names_stale`, and the writer process indexes every stale name in ONE statement at
-- the end of each transaction, before its COMMIT (`sqlwriter.index_names`): a committed
-- job is in the index, as before. Rows committed by other means (bulk loaders that write
-- with the stdlib, a crash cannot leave any: the index and the ids commit together) are
-- indexed when the next writer starts, or by the loader calling `index_names` itself.
--
-- A name not yet indexed must never be deleted from the contentless index (that would
-- corrupt it): the rename and delete triggers leave the index alone for a stale id, whose
-- current name `index_names` reads from `jobs` when it runs.

CREATE TABLE job_names_stale (id INTEGER PRIMARY KEY);

DROP TRIGGER jobs_filter_insert;
CREATE TRIGGER jobs_filter_insert AFTER INSERT ON jobs BEGIN
    INSERT OR IGNORE INTO job_keys (kind, key, job_id)
        SELECT 'asset', value, new.id FROM json_each(new.spec, '$.assets')
        UNION ALL SELECT 'asset', value, new.id FROM json_each(new.spec, '$.shared_assets')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.resources')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.pools');
    INSERT OR IGNORE INTO job_names_stale (id) VALUES (new.id);
END;

DROP TRIGGER jobs_filter_rename;
CREATE TRIGGER jobs_filter_rename AFTER UPDATE OF name ON jobs
WHEN old.name IS NOT new.name
    AND NOT EXISTS (SELECT 1 FROM job_names_stale WHERE id = old.id) BEGIN
    INSERT INTO job_names (job_names, rowid, name)
        VALUES ('delete', old.id, coalesce(old.name, old.workflow || '-' || old.id));
    INSERT INTO job_names (rowid, name)
        VALUES (new.id, coalesce(new.name, new.workflow || '-' || new.id));
END;

DROP TRIGGER jobs_filter_delete;
CREATE TRIGGER jobs_filter_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM job_keys WHERE job_id = old.id;
    INSERT INTO job_names (job_names, rowid, name)
        SELECT 'delete', old.id, coalesce(old.name, old.workflow || '-' || old.id)
        WHERE NOT EXISTS (SELECT 1 FROM job_names_stale WHERE id = old.id);
    DELETE FROM job_names_stale WHERE id = old.id;
END;
