-- Words a user wants to be alerted about (Zulip's AlertWord).
CREATE TABLE alertword (
    id               bigserial PRIMARY KEY,
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    word             text NOT NULL
);
CREATE UNIQUE INDEX alertword_user_word ON alertword (user_profile_id, lower(word));
