-- Claims pick the earliest due job: an index in exactly that order, so a
-- claim on a queue of millions reads one index entry instead of sorting.
DROP INDEX jobs_claimable;
CREATE INDEX jobs_claimable ON jobs (state, next_attempt_at, file_id);
