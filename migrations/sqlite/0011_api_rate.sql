-- The adaptive rate (requests_per_minute = "auto", issue #24): one row every
-- process sharing the queue reads and moves, so the fleet obeys one rate,
-- and a restart starts from the rate found rather than from scratch. The
-- rules are in src/rate.rs; times are Unix ms.
CREATE TABLE api_rate (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- Calls a minute; 0 until the search begins.
    per_minute REAL NOT NULL DEFAULT 0,
    -- When the current window of observation began.
    window_start INTEGER NOT NULL DEFAULT 0,
    -- 1 while the rate still doubles (no rate-limit answer met yet).
    probing INTEGER NOT NULL DEFAULT 1,
    -- Rate-limit answers that lowered the rate, and the last one's time.
    decreases INTEGER NOT NULL DEFAULT 0,
    last_decrease INTEGER
);

INSERT INTO api_rate (id) VALUES (1);
