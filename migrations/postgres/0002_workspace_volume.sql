-- The workspace volume a session owns: a warm-pool container brings its
-- own, so the name is no longer derived from the owner alone.
ALTER TABLE sandboxes ADD COLUMN workspace_volume TEXT;
