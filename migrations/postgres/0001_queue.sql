-- The minimax-dl queue on PostgreSQL: the schema of SQLite migrations
-- 0001-0008 in one file (there was no PostgreSQL queue to upgrade), with what
-- a fleet of hosts shares: the clock (section 1), the API-call window as a
-- function every host serialises on (section 4) and the fleet row (section
-- 6). Designed and checked in docs/design/postgres/ (schema.sql, queries.md).
--
-- Types, where they differ from SQLite (sqlx's PostgreSQL decoder is strict:
-- `try_get::<i64>` on an int4 or a numeric column is an error, not a cast):
--   attempts, job_events.attempt  integer  -> decode i32
--   cancel_requested              boolean  -> decode bool (SQLite: 0/1 integer)
--   every time                    bigint   Unix ms, as on SQLite, but taken from the
--                                          database clock (mdl_now_ms), never a host's
--   job_events.id                 bigint identity (SQLite: INTEGER AUTOINCREMENT)
--   sum(bigint) is numeric in PostgreSQL: sums are cast ::bigint before decoding.

-- 1. Clock ----------------------------------------------------------------

-- Unix milliseconds on the database clock, fixed for the statement's
-- transaction (now() is the transaction's start). STABLE and plain SQL, so it
-- is inlined and usable as an index bound (`next_attempt_at <= mdl_now_ms()`).
CREATE FUNCTION mdl_now_ms() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT floor(extract(epoch FROM now()) * 1000)::bigint $$;

-- The same, read now (clock_timestamp()): for a value that must be taken
-- after a lock was granted (the API-call window), not when the transaction began.
CREATE FUNCTION mdl_clock_ms() RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- 2. Jobs (0001, 0002, 0004) -------------------------------------------------

CREATE TABLE jobs (
    file_id           bigint  PRIMARY KEY,
    state             text    NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    -- Attempts that counted against max_attempts.
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   bigint  NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  bigint,
    cancel_requested  boolean NOT NULL DEFAULT false,
    bytes_expected    bigint,
    size_source       text,
    -- Bytes of the partial file (on file_host) fsynced before this row was written.
    bytes_done        bigint  NOT NULL DEFAULT 0,
    validator         text,
    filename          text,
    final_path        text,
    sha256            text,
    last_error        text,
    created_at        bigint  NOT NULL DEFAULT mdl_now_ms(),
    updated_at        bigint  NOT NULL DEFAULT mdl_now_ms(),
    -- 0002: segmented downloads' piece map.
    pieces            text,
    -- 0006: the boot in which the partial bytes were written (fetch::resume).
    boot_id           text,
    -- 0007: the host whose disk holds this job's partial file, and once done
    -- its final file: set by every claim. A claim by another host resets
    -- bytes_done, validator, pieces, sha256 and boot_id (they describe bytes
    -- that host cannot see) in the same statement.
    file_host         text
)
-- Heartbeats (lease_expires_at) and checkpoints (bytes_done, validator,
-- pieces, updated_at) touch no indexed column: with room left on the page
-- they are HOT updates, which write no index entry at all.
WITH (fillfactor = 80);

-- 0004: claims read the earliest due job straight from the index.
CREATE INDEX jobs_claimable ON jobs (state, next_attempt_at, file_id);

-- 3. History (0001) ---------------------------------------------------------

CREATE TABLE job_events (
    id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id  bigint  NOT NULL REFERENCES jobs (file_id) ON DELETE CASCADE,
    at       bigint  NOT NULL,
    kind     text    NOT NULL,
    attempt  integer,
    message  text
);

CREATE INDEX job_events_by_job ON job_events (file_id, id);

-- 4. The API-call window (0001) -------------------------------------------------

-- Times (database clock) of recent retrieve calls, fleet-wide: see mdl_reserve_api_call.
CREATE TABLE api_calls (
    at bigint NOT NULL
);

CREATE INDEX api_calls_by_time ON api_calls (at);

-- 5. Counts (0003), sharded -----------------------------------------------------

-- Per-state job counts and bytes, summed over 16 shards by `status`:
--   SELECT state, sum(jobs)::bigint, sum(bytes)::bigint FROM job_counts GROUP BY state
-- (80 rows, exact, a consistent snapshot). Which shard a statement adds to is
-- chosen by its connection (backend pid), not by file_id: a batched claim or
-- completion of 64 jobs would touch every file_id shard and collide with
-- every other batch, while two connections collide only when their pids
-- share a shard. Each statement changes at most a few rows of one shard, in
-- (state, shard) order, so two statements never wait on each other in a cycle.
CREATE TABLE job_counts (
    state text     NOT NULL,
    shard smallint NOT NULL,
    jobs  bigint   NOT NULL DEFAULT 0,
    bytes bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (state, shard)
);

INSERT INTO job_counts (state, shard)
SELECT s, n
FROM unnest(ARRAY['queued', 'running', 'done', 'failed', 'cancelled']) AS s,
     generate_series(0, 15) AS n;

CREATE FUNCTION mdl_count_shard() RETURNS smallint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (pg_backend_pid() % 16)::smallint $$;

-- One statement-level trigger per verb, reading the transition tables: a
-- batch of N rows costs one aggregate, not N trigger calls. Each adds the
-- statement's net per-state deltas to this connection's shard, in state
-- order; states whose delta nets to zero lock nothing (a heartbeat changes
-- no count and touches no counter row). PostgreSQL forbids a column list on
-- a trigger with transition tables, so the UPDATE one runs for every UPDATE
-- of jobs (warm, ~0.1 ms for a 16-row claim on this machine).
--
-- Wake-ups: a statement that makes rows `queued` (enqueue, COPY, retry,
-- release, a scheduled retry) sends one NOTIFY minimax_dl_jobs whose payload
-- is the earliest next_attempt_at among them; NOTIFY is delivered at commit
-- and coalesced per transaction. Claims, heartbeats, checkpoints and
-- completions never notify (NOTIFY serialises committing transactions on a
-- database-wide lock: keep it off the hot path).
CREATE FUNCTION mdl_jobs_after_insert() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    due bigint;
BEGIN
    INSERT INTO job_counts AS c (state, shard, jobs, bytes)
    SELECT state, mdl_count_shard(), count(*), sum(bytes_done)
    FROM new_rows GROUP BY state ORDER BY state
    ON CONFLICT (state, shard) DO UPDATE
        SET jobs = c.jobs + excluded.jobs, bytes = c.bytes + excluded.bytes;
    SELECT min(next_attempt_at) INTO due FROM new_rows WHERE state = 'queued';
    IF due IS NOT NULL THEN
        PERFORM pg_notify('minimax_dl_jobs', due::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION mdl_jobs_after_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    due bigint;
BEGIN
    INSERT INTO job_counts AS c (state, shard, jobs, bytes)
    SELECT state, mdl_count_shard(), sum(n), sum(b)
    FROM (SELECT state, count(*) AS n, sum(bytes_done) AS b FROM new_rows GROUP BY state
          UNION ALL
          SELECT state, -count(*), -sum(bytes_done) FROM old_rows GROUP BY state) AS d
    GROUP BY state
    HAVING sum(n) <> 0 OR sum(b) <> 0
    ORDER BY state
    ON CONFLICT (state, shard) DO UPDATE
        SET jobs = c.jobs + excluded.jobs, bytes = c.bytes + excluded.bytes;
    -- Rows that became queued (were not queued before this statement).
    SELECT min(n.next_attempt_at) INTO due
    FROM new_rows AS n JOIN old_rows AS o USING (file_id)
    WHERE n.state = 'queued' AND o.state <> 'queued';
    IF due IS NOT NULL THEN
        PERFORM pg_notify('minimax_dl_jobs', due::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION mdl_jobs_after_delete() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (state, shard, jobs, bytes)
    SELECT state, mdl_count_shard(), -count(*), -sum(bytes_done)
    FROM old_rows GROUP BY state ORDER BY state
    ON CONFLICT (state, shard) DO UPDATE
        SET jobs = c.jobs + excluded.jobs, bytes = c.bytes + excluded.bytes;
    RETURN NULL;
END $$;

CREATE FUNCTION mdl_jobs_after_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_counts SET jobs = 0, bytes = 0;
    RETURN NULL;
END $$;

CREATE TRIGGER job_counts_on_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mdl_jobs_after_insert();
CREATE TRIGGER job_counts_on_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mdl_jobs_after_update();
CREATE TRIGGER job_counts_on_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mdl_jobs_after_delete();
CREATE TRIGGER job_counts_on_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION mdl_jobs_after_truncate();

-- 5b. History of the hot two, by triggers (0005) ----------------------------------

-- Same conditions and texts as SQLite's 0005. `UPDATE OF lease_owner` fires
-- when lease_owner is assigned in the SET list, changed or not, exactly as
-- in SQLite: only a claim assigns it on a running job, so a reclaim under a
-- reused owner name is still recorded.
CREATE FUNCTION mdl_job_events_on_claim() RETURNS trigger
    LANGUAGE plpgsql AS $$
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
        END);
    RETURN NULL;
END $$;

CREATE FUNCTION mdl_job_events_on_done() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (file_id, at, kind, attempt, message)
    VALUES (NEW.file_id, NEW.updated_at, 'done', NULL, NEW.final_path);
    RETURN NULL;
END $$;

CREATE TRIGGER job_events_on_claim AFTER UPDATE OF lease_owner ON jobs
    FOR EACH ROW
    WHEN (NEW.state = 'running' AND NEW.lease_owner IS NOT NULL)
    EXECUTE FUNCTION mdl_job_events_on_claim();

CREATE TRIGGER job_events_on_done AFTER UPDATE OF state ON jobs
    FOR EACH ROW
    WHEN (NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done')
    EXECUTE FUNCTION mdl_job_events_on_done();

-- 6. The fleet (SQLite's 0008, the same row for hosts instead of processes) ------

-- One row: what the whole fleet shares besides the jobs.
CREATE TABLE fleet (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- After a rate-limit answer no host calls retrieve before this (db ms).
    cooldown_until  bigint  NOT NULL DEFAULT 0,
    -- Account-level pause (1004/1008 ...): NULL when not paused.
    pause_message   text,
    paused_at       bigint,
    paused_by       text,
    -- When the next probe may run (db ms); a host takes the probe by moving it on.
    probe_at        bigint,
    -- Bumped by every new pause: a probe only lifts the pause it probed.
    pause_epoch     bigint  NOT NULL DEFAULT 0
);

INSERT INTO fleet DEFAULT VALUES;

-- Counts one retrieve call against the fleet's cap of per_minute calls in
-- any window_ms, and honours the fleet's cooldown. Returns NULL when the call
-- may go (and it is counted), else how many ms to wait before asking again.
-- Serialised fleet-wide by a transaction-scoped advisory lock; the time is
-- read after the lock is granted (clock_timestamp, not now()), so the
-- recorded times increase in lock order and the count is exact on the
-- database clock. Must run in a READ COMMITTED transaction (the default):
-- each statement below then sees what the previous lock holder committed.
CREATE FUNCTION mdl_reserve_api_call(per_minute integer, window_ms bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t      bigint;
    n      bigint;
    oldest bigint;
    cool   bigint;
BEGIN
    -- 0x6d646c5f617069 = 'mdl_api': one key for the whole database.
    PERFORM pg_advisory_xact_lock(30791189080928361);
    t := mdl_clock_ms();
    SELECT cooldown_until INTO cool FROM fleet;
    IF cool > t THEN
        RETURN cool - t;
    END IF;
    DELETE FROM api_calls WHERE at <= t - window_ms;
    SELECT count(*), min(at) INTO n, oldest FROM api_calls;
    IF n < per_minute THEN
        INSERT INTO api_calls (at) VALUES (t);
        RETURN NULL;
    END IF;
    RETURN greatest(oldest + window_ms + 1 - t, 1);
END $$;
