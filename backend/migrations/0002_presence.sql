-- Presence (Zulip's UserPresence + PresenceSequence).
CREATE TABLE userpresence (
    user_profile_id      integer PRIMARY KEY REFERENCES userprofile(id),
    realm_id             integer NOT NULL REFERENCES realm(id),
    last_connected_time  timestamptz NOT NULL,
    last_active_time     timestamptz,           -- NULL: connected but never active
    last_update_id       bigint NOT NULL DEFAULT 0
);
CREATE INDEX userpresence_realm_update ON userpresence (realm_id, last_update_id);

-- Per-realm counter handed out to presence changes, so clients can ask
-- for what changed since the id they last saw.
CREATE TABLE presencesequence (
    realm_id        integer PRIMARY KEY REFERENCES realm(id),
    last_update_id  bigint NOT NULL DEFAULT 0
);
