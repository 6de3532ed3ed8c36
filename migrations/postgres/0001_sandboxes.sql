-- Which sandbox belongs to whom, and its clock. Plain SQL types so a
-- PostgreSQL deployment can take the same schema.
CREATE TABLE IF NOT EXISTS sandboxes (
    owner          TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    token_hash     TEXT,
    container_id   TEXT,
    created_at     BIGINT NOT NULL,
    container_at   BIGINT NOT NULL,
    last_active    BIGINT NOT NULL,
    idle_ttl_secs  BIGINT NOT NULL,
    image          TEXT,
    env            TEXT NOT NULL DEFAULT '[]',
    expired_at     BIGINT
);
