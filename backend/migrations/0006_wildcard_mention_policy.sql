-- Who may use @all/@everyone/@channel and @topic in large channels/topics
-- (Zulip's wildcard_mention_policy; 5 = administrators, Zulip's default).
ALTER TABLE realm ADD COLUMN wildcard_mention_policy smallint NOT NULL DEFAULT 5;
