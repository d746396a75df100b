-- An account-level pause (1004, 1008, ...) belongs to the MiniMax account
-- it was learned for: a host with a wrong key must not stop hosts with the
-- right one (SQLite's 0010). One row per account that was ever paused,
-- keyed by a digest of its API key (the first 16 hex digits of its
-- SHA-256; never the key). The pause columns of the fleet row are no
-- longer used; its cooldown is still shared by every host.
CREATE TABLE account_pauses (
    account        text   PRIMARY KEY,
    -- The pause: NULL paused_at when there is none (db ms).
    pause_message  text,
    paused_at      bigint,
    paused_by      text,
    -- When the next probe may run (db ms); a host takes the probe by moving it on.
    probe_at       bigint,
    -- Bumped by every new pause of the account: a probe only lifts the
    -- pause it probed. Rows are kept when a pause is lifted.
    pause_epoch    bigint NOT NULL DEFAULT 0
);
