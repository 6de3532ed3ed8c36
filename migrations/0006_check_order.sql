-- The order checks were made in, for checks made within the same second
-- (the newest keep their files; a dashboard links the last). SQLite's
-- `rowid` said it before; PostgreSQL has no rowid, so it is a column now,
-- filled at insert with one more than the largest. Existing rows take
-- their rowid (the PostgreSQL twin has no rows to fill).
ALTER TABLE checks ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE checks SET seq = rowid;
CREATE INDEX IF NOT EXISTS checks_by_seq ON checks (seq);
