-- The durable job queue. Times are Unix milliseconds (BIGINT), so the same
-- schema reads the same on SQLite and PostgreSQL.
CREATE TABLE jobs (
    file_id           BIGINT  PRIMARY KEY,
    state             TEXT    NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    -- Attempts that counted against max_attempts (rate limits, account-level
    -- pauses, shutdowns and transfers that made progress do not count).
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT  NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    -- Size the file is verified against and where that size came from
    -- ('api' when retrieve reported bytes > 0, 'cdn' when the CDN's length was pinned).
    bytes_expected    BIGINT,
    size_source       TEXT,
    -- Bytes of the partial file that were fsynced before this row was written.
    bytes_done        BIGINT  NOT NULL DEFAULT 0,
    -- ETag or Last-Modified of the CDN object the partial bytes came from.
    validator         TEXT,
    filename          TEXT,
    final_path        TEXT,
    -- Recorded once the complete file is verified, before it is renamed into place.
    sha256            TEXT,
    last_error        TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE INDEX jobs_claimable ON jobs (state, next_attempt_at);

-- Append-only history: why a job failed three times, who reclaimed it, when.
CREATE TABLE job_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id  BIGINT  NOT NULL REFERENCES jobs (file_id) ON DELETE CASCADE,
    at       BIGINT  NOT NULL,
    kind     TEXT    NOT NULL,
    attempt  INTEGER,
    message  TEXT
);

CREATE INDEX job_events_by_job ON job_events (file_id, id);

-- Times of recent retrieve calls, so the per-minute cap holds across restarts
-- and across processes sharing the queue.
CREATE TABLE api_calls (
    at BIGINT NOT NULL
);

CREATE INDEX api_calls_by_time ON api_calls (at);
