-- A host's own pause that other hosts do not obey (an API this host cannot
-- connect to), recorded so that `status` on any host shows it (see
-- migrations/sqlite/0014). Times on the database clock (mdl_now_ms).
CREATE TABLE host_pauses (
    host       TEXT PRIMARY KEY,
    message    TEXT NOT NULL,
    paused_by  TEXT NOT NULL,
    paused_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
