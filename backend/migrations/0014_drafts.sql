-- Message drafts kept for the user's clients (Zulip's Draft).
CREATE TABLE draft (
    id               bigserial PRIMARY KEY,
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    type             text NOT NULL,
    to_ids           integer[] NOT NULL,
    topic            text NOT NULL,
    content          text NOT NULL,
    last_edit_time   bigint NOT NULL
);
CREATE INDEX draft_user ON draft (user_profile_id, last_edit_time);
