-- A recovery code per student, shown once on joining, kept as a SHA-256
-- (the code is 80 random bits, so a plain hash is enough): the student
-- types it on another browser to get back into the class.
ALTER TABLE students ADD COLUMN recovery_hash TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS students_by_recovery ON students (recovery_hash);
