-- Schema 6: the database itself never lets a resource be double-booked, whichever nodes book
-- it (SPEC §10). A resource of capacity N has N slots; a reservation holds one slot of its
-- resource for its whole span, and the exclusion constraint below forbids two reservations
-- of one slot whose spans overlap. The trigger jobd_reservation_slot picks the slot; the
-- capacities are the nodes' configuration, written by each node at start-up and reload
-- (jobd_resources). Other nodes' bookings reach each node's booking index by NOTIFY.
CREATE EXTENSION IF NOT EXISTS btree_gist;  -- "=" on text and integer inside a GiST index

-- Spans as the booking index has them: half-open [start, end); a zero-length reservation
-- [t, t) holds the instant t, so it is the closed [t, t].
CREATE TYPE jobd_span AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE FUNCTION jobd_span_of(s float8, e float8) RETURNS jobd_span
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN jobd_span(s, e, CASE WHEN e = s THEN '[]' ELSE '[)' END);

CREATE TABLE jobd_resources (
    name     text PRIMARY KEY,
    capacity integer NOT NULL
);

ALTER TABLE reservations
    ADD COLUMN slot integer,
    ADD COLUMN span jobd_span GENERATED ALWAYS AS (jobd_span_of(start, "end")) STORED;

-- The lowest slot of ``res`` that no reservation overlapping ``want`` holds.
CREATE FUNCTION jobd_free_slot(res text, want jobd_span) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    used integer;
    free integer := 0;
BEGIN
    FOR used IN SELECT DISTINCT slot FROM reservations
                 WHERE resource = res AND span && want AND slot IS NOT NULL ORDER BY slot
    LOOP
        EXIT WHEN used > free;
        free := used + 1;
    END LOOP;
    RETURN free;
END $$;

-- The bookings already made get their slots: first fit in order of start, which needs no
-- more slots than the most reservations of a resource overlapping at one instant.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT ctid AS row_id, resource, span FROM reservations ORDER BY resource, start
    LOOP
        UPDATE reservations SET slot = jobd_free_slot(r.resource, r.span) WHERE ctid = r.row_id;
    END LOOP;
END $$;

ALTER TABLE reservations
    ALTER COLUMN slot SET NOT NULL,
    ADD CONSTRAINT reservations_never_double_booked
        EXCLUDE USING gist (resource WITH =, slot WITH =, span WITH &&);

-- A new reservation takes the lowest slot of its resource that is free over its span. The
-- advisory lock (per resource, held to the end of the transaction) makes the nodes that book
-- one resource take turns: each sees the slots the others committed (a VOLATILE function's
-- statements take a fresh snapshot), so none is refused for a slot another node holds only
-- for a moment. No free slot: the booking conflict, as SQLSTATE 23P01 with a JSON detail
-- naming the resource and the jobs in the way (jobd.store.postgres.rules reads it). A
-- resource with no row in jobd_resources (`jobd db copy` writes bookings before any node
-- ran) takes the next free slot.
CREATE FUNCTION jobd_reservation_slot() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cap integer;
    free integer;
    want jobd_span := jobd_span_of(NEW.start, NEW."end");
BEGIN
    PERFORM pg_advisory_xact_lock(7316030, hashtext(NEW.resource));
    cap := coalesce((SELECT capacity FROM jobd_resources WHERE name = NEW.resource),
                    2147483647);
    free := jobd_free_slot(NEW.resource, want);
    IF free >= cap THEN
        RAISE EXCEPTION 'resource % is fully booked', NEW.resource USING
            ERRCODE = 'exclusion_violation',
            CONSTRAINT = 'reservations_never_double_booked',
            DETAIL = json_build_object(
                'resource', NEW.resource,
                'jobs', (SELECT coalesce(json_agg(DISTINCT o.job_id), '[]')
                           FROM reservations o
                          WHERE o.resource = NEW.resource AND o.span && want))::text;
    END IF;
    NEW.slot := free;
    RETURN NEW;
END $$;
CREATE TRIGGER reservations_slot BEFORE INSERT ON reservations
    FOR EACH ROW EXECUTE FUNCTION jobd_reservation_slot();

-- "Reservations of this job changed": ``<writer's backend pid> <job id>``, so that a node
-- skips its own writes.
CREATE FUNCTION jobd_reservation_news() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('jobd_bookings', pg_backend_pid() || ' ' || OLD.job_id);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('jobd_bookings', pg_backend_pid() || ' ' || NEW.job_id);
    RETURN NEW;
END $$;
CREATE TRIGGER reservations_news AFTER INSERT OR DELETE ON reservations
    FOR EACH ROW EXECUTE FUNCTION jobd_reservation_news();
