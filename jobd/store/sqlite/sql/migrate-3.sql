-- jobd schema, version 3: jobs.run_started_at, set when a run's start script ran (NULL: not
-- yet, or no run), so that pause/resume and a daemon restart continue the run without running
-- it again; retry and restart clear it (a new run). A job of a version-2 database whose run
-- already ran a step counts as started.
ALTER TABLE jobs ADD COLUMN run_started_at REAL;
UPDATE jobs SET run_started_at = updated_at
    WHERE state IN ('running', 'cancel-requested', 'paused', 'confirmed', 'pending', 'queued',
                    'waiting-for-lock')
    AND EXISTS (SELECT 1 FROM steps WHERE steps.job_id = jobs.id AND steps.attempts > 0);
