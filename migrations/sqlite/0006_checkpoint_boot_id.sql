-- The boot in which a partial file's bytes were written, recorded with each
-- checkpoint. A resume in the same boot keeps the partial file as it is on
-- disk (bytes handed to the kernel survive a killed process); after a
-- reboot, or when this is NULL, only the fsynced bytes_done prefix.
ALTER TABLE jobs ADD COLUMN boot_id TEXT;
