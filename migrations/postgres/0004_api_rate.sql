-- The adaptive rate (requests_per_minute = "auto", issue #24), as SQLite's
-- 0011: one row the whole fleet reads and moves under FOR UPDATE, on the
-- database clock (mdl_clock_ms), so every host obeys one rate and a
-- restart starts from the rate found. The rules are in src/rate.rs.
CREATE TABLE api_rate (
    id             boolean          PRIMARY KEY DEFAULT true CHECK (id),
    -- Calls a minute; 0 until the search begins.
    per_minute     double precision NOT NULL DEFAULT 0,
    -- When the current window of observation began (db ms).
    window_start   bigint           NOT NULL DEFAULT 0,
    -- True while the rate still doubles (no rate-limit answer met yet).
    probing        boolean          NOT NULL DEFAULT true,
    -- Rate-limit answers that lowered the rate, and the last one's time.
    decreases      bigint           NOT NULL DEFAULT 0,
    last_decrease  bigint
);

INSERT INTO api_rate DEFAULT VALUES;
