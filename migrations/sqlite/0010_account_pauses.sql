-- An account-level pause (1004, 1008, ...) belongs to the MiniMax account
-- it was learned for: a host with a wrong key must not stop hosts with the
-- right one. One row per account that was ever paused, keyed by a digest
-- of its API key (the first 16 hex digits of its SHA-256; never the key).
-- The pause columns of the fleet row (0008) are no longer used; its
-- cooldown is still shared by every process.
CREATE TABLE account_pauses (
    account TEXT PRIMARY KEY,
    -- The pause: NULL paused_at when there is none.
    pause_message TEXT,
    paused_at INTEGER,
    paused_by TEXT,
    -- When the next probe may run; a process takes the probe by moving it on.
    probe_at INTEGER,
    -- Bumped by each new pause of the account: a probe lifts only the
    -- pause it probed. Rows are kept when a pause is lifted, so it only grows.
    pause_epoch INTEGER NOT NULL DEFAULT 0
);
