-- Emoji reactions (Zulip's zerver_reaction).
CREATE TABLE reaction (
    id               bigserial PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES message(id) ON DELETE CASCADE,
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    emoji_name       text NOT NULL,
    emoji_code       text NOT NULL,
    reaction_type    text NOT NULL,
    UNIQUE (message_id, user_profile_id, reaction_type, emoji_code)
);
