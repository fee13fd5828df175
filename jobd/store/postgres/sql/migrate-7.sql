-- Schema 7: one job per schedule firing across the nodes of a cluster (SPEC §10).
--
-- Every node runs the schedules' timers and fires every firing; the database keeps one
-- record per firing. Writing a firing's event (fired, skipped or missed) also claims
-- (schedule, fire_time) here, in the same transaction as the event and, for a fired one,
-- its job: the first node's claim wins; another node's fails on the primary key
-- (SQLSTATE 23505, constraint schedule_firings_pkey), and the store turns that into a
-- failed guard: nothing of that unit is written, no job, no second count of a miss.
CREATE TABLE schedule_firings (
    schedule  text NOT NULL,
    fire_time double precision NOT NULL,
    PRIMARY KEY (schedule, fire_time)
);
INSERT INTO schedule_firings (schedule, fire_time)
    SELECT DISTINCT schedule, fire_time FROM schedule_events
     WHERE kind IN ('fired', 'skipped', 'missed');

CREATE FUNCTION jobd_claim_firing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_firings (schedule, fire_time) VALUES (NEW.schedule, NEW.fire_time);
    RETURN NEW;
END $$;
CREATE TRIGGER schedule_events_claim BEFORE INSERT ON schedule_events
    FOR EACH ROW WHEN (NEW.kind IN ('fired', 'skipped', 'missed'))
    EXECUTE FUNCTION jobd_claim_firing();
