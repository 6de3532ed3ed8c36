-- Several server replicas share one store. Each sandbox (by its owner key)
-- has at most one replica acting on it: the one holding its lease until
-- expires_at (unix milliseconds: BIGINT), renewed by that replica and taken over
-- by another once it lapses. `addr` is where the holder serves, for a
-- replica that forwards a request to it.
CREATE TABLE IF NOT EXISTS leases (
    sandbox TEXT PRIMARY KEY NOT NULL,
    replica TEXT NOT NULL,
    addr TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_replica ON leases (replica);
-- Each live replica's heartbeat, renewed with its leases: start-up's orphan
-- sweep runs only when no other replica is live.
CREATE TABLE IF NOT EXISTS replicas (
    id TEXT PRIMARY KEY NOT NULL,
    addr TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
