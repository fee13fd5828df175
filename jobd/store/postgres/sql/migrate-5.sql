-- Schema 5: the write functions look rows up by their keys, whatever the statistics say.
--
-- PL/pgSQL keeps a generic plan of each statement of a function, made once per connection
-- and kept. Made while the tables were small (a new database whose statistics autovacuum
-- has not gathered yet: a node's first batches), the plans were sequential scans (a
-- jobs or steps row by id) and hash joins over them (jobd_apply_bulk's UPDATE ... FROM),
-- then used for every batch after, whatever the tables' size: a batch's cost grew with the
-- table (measured: 3 ms for a batch of 17 units over 2,000 jobs, most of it scanning).
-- Without sequential scans, hash or merge joins, every statement of these functions, and
-- of those they call (the asset-lock functions, the triggers), reads by its index and joins
-- by nested loops over the keys: a batch costs its own rows at any table size. A statement
-- that has no usable index still runs (the settings only make other plans look dearer).
--
-- A later CREATE OR REPLACE of one of these functions must repeat the SET clauses.
ALTER FUNCTION jobd_apply(jsonb)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION jobd_apply_bulk(jsonb)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION jobd_apply_locked(jsonb, text[], bigint[], text[])
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION jobd_locks_release_node(text)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
