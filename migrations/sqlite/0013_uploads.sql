-- A job's object in a bucket archive (output_dir = s3://...), one row per
-- job, written only by the job's lease holder:
--   object_url  s3://BUCKET/KEY, the file's final place (as final_path);
--   upload_id   the multipart upload started for it and not yet completed
--               or aborted: recorded before its first part is sent, so the
--               next worker of the job aborts it and no parts are orphaned;
--   etag, version  what the store said of the completed object.
-- Deleted with its job (prune).
CREATE TABLE uploads (
    file_id    INTEGER PRIMARY KEY REFERENCES jobs (file_id) ON DELETE CASCADE,
    object_url TEXT NOT NULL,
    upload_id  TEXT,
    etag       TEXT,
    version    TEXT,
    updated_at INTEGER NOT NULL
);
