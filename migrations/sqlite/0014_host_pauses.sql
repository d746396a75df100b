-- A host's own pause that other hosts do not obey (an API this host cannot
-- connect to), recorded so that `status` on any host shows it. One row a
-- host, written by its running daemon: refreshed while the pause lasts,
-- deleted when it ends; a row past expires_at (a daemon that died paused)
-- means nothing. Times in ms since the epoch.
CREATE TABLE host_pauses (
    host       TEXT PRIMARY KEY,
    message    TEXT NOT NULL,
    paused_by  TEXT NOT NULL,
    paused_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
