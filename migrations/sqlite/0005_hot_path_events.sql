-- Claims and completions are the queue's hottest writes, made for every job.
-- Their history lines are written here, by triggers, so that each is a
-- single UPDATE (atomic on its own, one round trip to the database thread)
-- instead of a transaction of several statements. The texts are the ones the
-- code wrote before. Only a claim sets lease_owner on a running job (the
-- heartbeat renews lease_expires_at alone), so a claim is what fires the
-- first trigger, even when a restarted daemon reuses an owner name.

CREATE TRIGGER job_events_on_claim AFTER UPDATE OF lease_owner ON jobs
WHEN NEW.state = 'running' AND NEW.lease_owner IS NOT NULL
BEGIN
    INSERT INTO job_events (file_id, at, kind, attempt, message)
    VALUES (
        NEW.file_id,
        NEW.updated_at,
        CASE WHEN OLD.state = 'running' THEN 'reclaimed' ELSE 'claimed' END,
        NEW.attempts + 1,
        CASE WHEN OLD.state = 'running'
             THEN 'lease of ' || coalesce(OLD.lease_owner, 'an unknown worker')
                  || ' expired; claimed by ' || NEW.lease_owner
             ELSE 'claimed by ' || NEW.lease_owner
        END
    );
END;

CREATE TRIGGER job_events_on_done AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'done' AND OLD.state IS NOT 'done'
BEGIN
    INSERT INTO job_events (file_id, at, kind, attempt, message)
    VALUES (NEW.file_id, NEW.updated_at, 'done', NULL, NEW.final_path);
END;
