-- Schema 23: every batch's statements keep their plans (generic), not only the split batch
-- of parted requests (schema 21); docs/performance.md, "Generic plans for every batch".
--
-- A function's SET clause holds for the functions it calls: set on the entry points of a
-- batch (the writer's APPLY* statements, queries.py), it covers the asset-lock functions
-- and the triggers under them. Every statement there reads by key or by an index's leading
-- columns whatever its parameters (the enable_* settings of schema 5 and 18 see to that),
-- so the plan built for one call serves every later one; the default ``auto`` built a
-- custom plan at every call of a statement whose custom plans looked cheaper than its
-- generic one, which a batch of a few jobs (three nodes sharing ten assets) paid for in
-- planning more than in rows.
ALTER FUNCTION jobd_apply(jsonb) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobd_apply_bulk(jsonb) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobd_apply_locked(jsonb, text[], bigint[], text[])
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobd_apply_split(jsonb, integer, jsonb, text[], bigint[], text[])
    SET plan_cache_mode = force_generic_plan;
