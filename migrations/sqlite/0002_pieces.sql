-- Segmented downloads: which fixed-size pieces of the partial file are
-- complete and fsynced ("piece_size/total/ranges", see fetch::pieces).
ALTER TABLE jobs ADD COLUMN pieces TEXT;
