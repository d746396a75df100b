-- A job's object in a bucket archive (output_dir = s3://...), one row per
-- job, written only by the job's lease holder (see migrations/sqlite/0013).
CREATE TABLE uploads (
    file_id    BIGINT PRIMARY KEY REFERENCES jobs (file_id) ON DELETE CASCADE,
    object_url TEXT NOT NULL,
    upload_id  TEXT,
    etag       TEXT,
    version    TEXT,
    updated_at BIGINT NOT NULL DEFAULT mdl_now_ms()
);
