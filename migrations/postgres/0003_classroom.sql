-- Teachers, their classes, the students who joined them, and every check.
-- Ids are text (uuids) and times unix seconds, so the same schema works on
-- PostgreSQL.
CREATE TABLE IF NOT EXISTS teachers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS classes (
    id          TEXT PRIMARY KEY,
    teacher_id  TEXT NOT NULL REFERENCES teachers(id),
    name        TEXT NOT NULL,
    code        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS students (
    id            TEXT PRIMARY KEY,
    class_id      TEXT NOT NULL REFERENCES classes(id),
    display_name  TEXT NOT NULL,
    owner         TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    UNIQUE (class_id, display_name)
);

CREATE TABLE IF NOT EXISTS checks (
    id          TEXT PRIMARY KEY,
    student_id  TEXT NOT NULL REFERENCES students(id),
    exercise    TEXT NOT NULL,
    score       BIGINT NOT NULL,
    max_score   BIGINT NOT NULL,
    report      TEXT NOT NULL,
    files       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS checks_by_student ON checks (student_id, exercise);
