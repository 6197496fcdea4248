-- Message edits: when, and the API-format history (newest first).
ALTER TABLE message ADD COLUMN last_edit_time timestamptz;
ALTER TABLE message ADD COLUMN edit_history jsonb;
