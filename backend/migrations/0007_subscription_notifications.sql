-- Per-subscription notification settings; NULL follows the user's default.
ALTER TABLE subscription ADD COLUMN desktop_notifications boolean;
ALTER TABLE subscription ADD COLUMN email_notifications boolean;
ALTER TABLE subscription ADD COLUMN wildcard_mentions_notify boolean;
ALTER TABLE subscription ADD COLUMN push_notifications boolean;
ALTER TABLE subscription ADD COLUMN audible_notifications boolean;
