-- Users a user has muted (Zulip's MutedUser).
CREATE TABLE muteduser (
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    muted_user_id    integer NOT NULL REFERENCES userprofile(id),
    date_muted       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_profile_id, muted_user_id)
);
