-- Generation tasks (issue #12), as SQLite migration 0009: a task id waits
-- here in 'generating' while MiniMax makes its video, polled on the
-- schedule in next_poll_at (a poller takes a task by moving next_poll_at on
-- with FOR UPDATE SKIP LOCKED, so hosts sharing the queue never poll one
-- task at once), until it ends: 'done' (its result became the job
-- file_id), 'failed' or 'cancelled'. Every time is Unix ms on the database
-- clock (mdl_now_ms). polls is bigint, so both stores decode it alike.
CREATE TABLE tasks (
    task_id         bigint  PRIMARY KEY,
    api             text    NOT NULL CHECK (api IN ('v1', 'v2')),
    state           text    NOT NULL DEFAULT 'generating'
                    CHECK (state IN ('generating', 'done', 'failed', 'cancelled')),
    polls           bigint  NOT NULL DEFAULT 0,
    next_poll_at    bigint  NOT NULL DEFAULT 0,
    deadline_at     bigint  NOT NULL,
    minimax_status  text,
    file_id         bigint,
    last_error      text,
    created_at      bigint  NOT NULL DEFAULT mdl_now_ms(),
    updated_at      bigint  NOT NULL DEFAULT mdl_now_ms()
);

CREATE INDEX tasks_due ON tasks (state, next_poll_at);

-- A job that came from a task: which one, and which API resolves it.
ALTER TABLE jobs ADD COLUMN task_id bigint;
ALTER TABLE jobs ADD COLUMN task_api text CHECK (task_api IN ('v1', 'v2'));
