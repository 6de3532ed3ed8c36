-- The exercises a class sees, as its teacher chose them. A class whose
-- teacher has not chosen (exercises_chosen = 0) sees every exercise, as
-- every class did before this table.
ALTER TABLE classes ADD COLUMN exercises_chosen BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS class_exercises (
    class_id  TEXT NOT NULL REFERENCES classes(id),
    exercise  TEXT NOT NULL,
    PRIMARY KEY (class_id, exercise)
);
