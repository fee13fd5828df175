-- jobd schema, version 4: jobs by the hour of their time (start_at, else created_at) and
-- then by id, so that a page of a time range in id order reads each hour's jobs in id
-- order (jobd/store/sqlite/hours.py) instead of every entry of the range in jobs_by_time
-- and sorting them: a day of old jobs out of 1,000,000 was two reads of 70,000 entries.
-- The expression must stay as written: the queries of hours.py repeat it to use the index.
CREATE INDEX jobs_by_hour ON jobs (CAST(coalesce(start_at, created_at) / 3600 AS INTEGER), id);
