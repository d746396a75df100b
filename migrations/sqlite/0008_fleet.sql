-- What every process sharing this queue must agree on, in one row: the
-- cooldown after a rate-limit answer (no one calls the API before it ends)
-- and an account-level pause (1004, 1008, ...: no one claims until a probe
-- succeeds). On SQLite the processes are on one host; the PostgreSQL queue
-- has the same row for a fleet of hosts.
CREATE TABLE fleet (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- No API call before this time (Unix ms).
    cooldown_until INTEGER NOT NULL DEFAULT 0,
    -- The pause: NULL paused_at when there is none.
    pause_message TEXT,
    paused_at INTEGER,
    paused_by TEXT,
    -- When the next probe may run; a process takes the probe by moving it on.
    probe_at INTEGER,
    -- Bumped by each new pause: a probe lifts only the pause it probed.
    pause_epoch INTEGER NOT NULL DEFAULT 0
);

INSERT INTO fleet (id) VALUES (1);
