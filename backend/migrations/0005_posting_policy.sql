-- Who may post to a stream (Zulip's stream_post_policy: 1 everyone,
-- 2 administrators, 3 everyone but new members, 4 administrators and
-- moderators) and after how many days a member stops being new.
ALTER TABLE stream ADD COLUMN stream_post_policy smallint NOT NULL DEFAULT 1;
ALTER TABLE realm ADD COLUMN waiting_period_threshold integer NOT NULL DEFAULT 0;
