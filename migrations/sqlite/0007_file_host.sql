-- The host whose disk holds a job's partial file, and once the job is done
-- its final file: set by every claim to the first field of the lease owner
-- (host:pidns:pid:tag). A claim by a different host resets bytes_done,
-- validator, pieces, sha256 and boot_id in the same statement: they describe
-- bytes that host cannot see, so it starts from its own partial file. NULL
-- (jobs claimed before this column existed) counts as this host's, so an
-- upgraded queue resumes its partial files as before.
ALTER TABLE jobs ADD COLUMN file_host TEXT;
