-- Generation tasks (issue #12): a task id waits here in 'generating' while
-- MiniMax makes its video, polled on the schedule in next_poll_at (a
-- poller takes a task by moving next_poll_at on, so processes sharing the
-- queue never poll one task at once), until it ends: 'done' (its result
-- became the job file_id), 'failed' (MiniMax's reason, or the deadline) or
-- 'cancelled'. Times are Unix milliseconds.
CREATE TABLE tasks (
    task_id         BIGINT  PRIMARY KEY,
    -- How it is queried: v1 answers a file id, v2 the video's URL.
    api             TEXT    NOT NULL CHECK (api IN ('v1', 'v2')),
    state           TEXT    NOT NULL DEFAULT 'generating'
                    CHECK (state IN ('generating', 'done', 'failed', 'cancelled')),
    polls           INTEGER NOT NULL DEFAULT 0,
    next_poll_at    BIGINT  NOT NULL DEFAULT 0,
    deadline_at     BIGINT  NOT NULL,
    -- MiniMax's last word on it (Processing, running, ...).
    minimax_status  TEXT,
    -- The job it became (v1: the generated file; v2: the task id itself).
    file_id         BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE INDEX tasks_due ON tasks (state, next_poll_at);

-- A job that came from a task: which one, and which API resolves it (a
-- v2 job has no file id: it is keyed by its task id and each attempt
-- queries the task for a fresh URL).
ALTER TABLE jobs ADD COLUMN task_id BIGINT;
ALTER TABLE jobs ADD COLUMN task_api TEXT CHECK (task_api IN ('v1', 'v2'));
