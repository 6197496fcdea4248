-- Queue workers (backend/src/workers): missed-message emails waiting for
-- their batching delay, mobile devices, outgoing-webhook services, and
-- fetched link previews.

-- Zulip's ScheduledMessageNotificationEmail. A row is written (once: the
-- unique key makes a redelivered queue item a no-op) before the queue item
-- is acknowledged, and marked sent in the transaction that sent the email,
-- so a worker killed at any point neither loses nor repeats an email.
CREATE TABLE scheduled_message_email (
    id                       bigserial PRIMARY KEY,
    user_profile_id          integer NOT NULL REFERENCES userprofile(id),
    message_id               bigint NOT NULL,
    trigger                  text NOT NULL,
    mentioned_user_group_id  integer,
    scheduled_timestamp      timestamptz NOT NULL,
    -- Set when the batch this row belongs to was sent (or skipped, or gave
    -- up); such rows are kept a day to absorb redeliveries, then purged.
    done_at                  timestamptz,
    outcome                  text,
    attempts                 integer NOT NULL DEFAULT 0,
    last_error               text,
    UNIQUE (user_profile_id, message_id)
);
CREATE INDEX scheduled_message_email_due ON scheduled_message_email (scheduled_timestamp) WHERE done_at IS NULL;

-- Zulip's PushDeviceToken (kind 1 = APNs, 2 = FCM).
CREATE TABLE push_device_token (
    id               bigserial PRIMARY KEY,
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    kind             smallint NOT NULL,
    token            text NOT NULL,
    ios_app_id       text,
    last_updated     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_profile_id, kind, token)
);

-- Zulip's Service: what an outgoing-webhook bot calls.
CREATE TABLE service (
    id               serial PRIMARY KEY,
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    name             text NOT NULL,
    base_url         text NOT NULL,
    token            text NOT NULL,
    interface        smallint NOT NULL DEFAULT 1   -- 1 generic (Zulip), 2 Slack
);
CREATE INDEX service_user ON service (user_profile_id);
ALTER TABLE userprofile ADD COLUMN bot_owner_id integer REFERENCES userprofile(id);
-- A member's register lists the bots they own.
CREATE INDEX userprofile_bot_owner ON userprofile (bot_owner_id) WHERE is_bot;

-- Link previews (Zulip caches these too): what a fetch of the URL found;
-- data is NULL when the page offered nothing to show.
CREATE TABLE link_preview (
    url         text PRIMARY KEY,
    data        jsonb,
    fetched_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE realm ADD COLUMN inline_url_embed_preview boolean NOT NULL DEFAULT false;

-- What the push bouncer knows users and realms by.
ALTER TABLE userprofile ADD COLUMN uuid uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE realm ADD COLUMN uuid uuid NOT NULL DEFAULT gen_random_uuid();
-- The secret of each user's one-click unsubscribe link in missed-message
-- emails (122 random bits).
ALTER TABLE userprofile ADD COLUMN unsubscribe_key text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', '');
CREATE INDEX userprofile_unsubscribe_key ON userprofile (unsubscribe_key);
