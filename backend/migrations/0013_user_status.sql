-- A user's status (Zulip's UserStatus): text and emoji.
CREATE TABLE userstatus (
    user_profile_id  integer PRIMARY KEY REFERENCES userprofile(id),
    status_text      text NOT NULL DEFAULT '',
    emoji_name       text NOT NULL DEFAULT '',
    emoji_code       text NOT NULL DEFAULT '',
    reaction_type    text NOT NULL DEFAULT 'unicode_emoji',
    updated          timestamptz NOT NULL DEFAULT now()
);
