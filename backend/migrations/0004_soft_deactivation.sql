-- Soft deactivation: when each user was last seen, and the audit log whose
-- subscription entries let add_missing_messages rebuild exactly the rows an
-- idle user missed. Event types are Zulip's RealmAuditLog values.
ALTER TABLE userprofile ADD COLUMN last_activity timestamptz;

CREATE TABLE realmauditlog (
    id                     bigserial PRIMARY KEY,
    realm_id               integer NOT NULL REFERENCES realm(id),
    modified_user_id       integer REFERENCES userprofile(id),
    modified_stream_id     integer REFERENCES stream(id),
    event_type             smallint NOT NULL,
    -- Highest message id when the event happened (subscription events).
    event_last_message_id  bigint,
    event_time             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX realmauditlog_user_type ON realmauditlog (modified_user_id, event_type);

CREATE INDEX userprofile_idle ON userprofile (realm_id) WHERE long_term_idle;
