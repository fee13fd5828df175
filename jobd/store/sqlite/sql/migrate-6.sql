-- jobd schema, version 6: a job's keys (its assets and resources, for the list filters) are
-- read out of its spec only when the spec has one. Version 2's trigger ran four json_each over
-- every inserted spec, most of which (no assets, no resources: the codec leaves empty lists
-- out) have none: 24,000 of the writer's 339,000 instructions per no-op job, and the insert
-- of a 1,000-job batch holds the one writer while every worker's next write waits. Now
-- 326,000 (bench/writer.py measure: a second trigger's firing costs the rest). A key list in the spec's text is named "assets", "shared_assets", "resources" or
-- "pools" (with its quotes, whatever the spacing); the WHEN finds those names, and a name
-- that appears only inside a parameter costs only the json_each that then finds nothing.
-- The name's staleness (version 5) moves to a trigger of its own, which every insert fires.
DROP TRIGGER jobs_filter_insert;
CREATE TRIGGER jobs_filter_insert AFTER INSERT ON jobs
WHEN instr(new.spec, '"assets"') OR instr(new.spec, '"shared_assets"')
    OR instr(new.spec, '"resources"') OR instr(new.spec, '"pools"')
BEGIN
    INSERT OR IGNORE INTO job_keys (kind, key, job_id)
        SELECT 'asset', value, new.id FROM json_each(new.spec, '$.assets')
        UNION ALL SELECT 'asset', value, new.id FROM json_each(new.spec, '$.shared_assets')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.resources')
        UNION ALL SELECT 'resource', value, new.id FROM json_each(new.spec, '$.pools');
END;
CREATE TRIGGER jobs_names_insert AFTER INSERT ON jobs BEGIN
    INSERT OR IGNORE INTO job_names_stale (id) VALUES (new.id);
END;
