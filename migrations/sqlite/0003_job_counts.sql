-- Per-state job counts and bytes, kept current by triggers, so `status`
-- answers in O(1) on a queue of millions. Inserts are counted by enqueue
-- itself (one UPDATE per batch instead of one trigger per row).
CREATE TABLE job_counts (
    state TEXT   PRIMARY KEY,
    jobs  BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0
);

INSERT INTO job_counts (state) VALUES ('queued'), ('running'), ('done'), ('failed'), ('cancelled');

UPDATE job_counts SET
    jobs  = (SELECT count(*) FROM jobs WHERE jobs.state = job_counts.state),
    bytes = (SELECT coalesce(sum(bytes_done), 0) FROM jobs WHERE jobs.state = job_counts.state);

CREATE TRIGGER job_counts_on_update AFTER UPDATE OF state, bytes_done ON jobs
BEGIN
    UPDATE job_counts SET jobs = jobs - 1, bytes = bytes - OLD.bytes_done WHERE state = OLD.state;
    UPDATE job_counts SET jobs = jobs + 1, bytes = bytes + NEW.bytes_done WHERE state = NEW.state;
END;

CREATE TRIGGER job_counts_on_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET jobs = jobs - 1, bytes = bytes - OLD.bytes_done WHERE state = OLD.state;
END;
