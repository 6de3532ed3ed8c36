-- The order checks were made in, for checks made within the same second
-- (the newest keep their files; a dashboard links the last), filled at
-- insert with one more than the largest. The SQLite twin also fills
-- existing rows from their rowid; a PostgreSQL store starts with this
-- migration, so it has none.
ALTER TABLE checks ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS checks_by_seq ON checks (seq);
