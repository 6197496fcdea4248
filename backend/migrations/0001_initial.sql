-- Squall's initial schema: the subset of Zulip's data model the API needs.
-- Names follow Zulip's tables so code and queries map onto the spec.

CREATE TABLE realm (
    id              serial PRIMARY KEY,
    string_id       text NOT NULL UNIQUE,          -- subdomain; '' is the root realm
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    deactivated     boolean NOT NULL DEFAULT false,
    date_created    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE userprofile (
    id                     serial PRIMARY KEY,
    realm_id               integer NOT NULL REFERENCES realm(id),
    email                  text NOT NULL,            -- API email
    delivery_email         text NOT NULL,
    full_name              text NOT NULL,
    role                   integer NOT NULL DEFAULT 400,  -- 100 owner, 200 admin, 300 moderator, 400 member, 600 guest
    api_key                char(32) NOT NULL UNIQUE,
    password               text,                     -- argon2 PHC string; NULL = cannot log in with a password
    is_active              boolean NOT NULL DEFAULT true,
    is_bot                 boolean NOT NULL DEFAULT false,
    bot_type               integer,
    long_term_idle         boolean NOT NULL DEFAULT false,
    last_active_message_id bigint,
    timezone               text NOT NULL DEFAULT '',
    avatar_version         integer NOT NULL DEFAULT 1,
    date_joined            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX userprofile_realm_delivery_email ON userprofile (realm_id, lower(delivery_email));
CREATE INDEX userprofile_realm_full_name ON userprofile (realm_id, lower(full_name));

-- Recipient types: 1 personal (type_id = user id), 2 stream, 3 direct message group.
CREATE TABLE recipient (
    id       serial PRIMARY KEY,
    type     smallint NOT NULL,
    type_id  integer NOT NULL,
    UNIQUE (type, type_id)
);

CREATE TABLE stream (
    id                             serial PRIMARY KEY,
    realm_id                       integer NOT NULL REFERENCES realm(id),
    name                           text NOT NULL,
    description                    text NOT NULL DEFAULT '',
    rendered_description           text NOT NULL DEFAULT '',
    invite_only                    boolean NOT NULL DEFAULT false,
    is_web_public                  boolean NOT NULL DEFAULT false,
    history_public_to_subscribers  boolean NOT NULL DEFAULT true,
    creator_id                     integer REFERENCES userprofile(id),
    recipient_id                   integer REFERENCES recipient(id),
    first_message_id               bigint,
    date_created                   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX stream_realm_name ON stream (realm_id, lower(name));

CREATE TABLE direct_message_group (
    id            serial PRIMARY KEY,
    huddle_hash   text NOT NULL UNIQUE,              -- sorted member ids joined by ','
    recipient_id  integer REFERENCES recipient(id)
);

CREATE TABLE subscription (
    id               bigserial PRIMARY KEY,
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    recipient_id     integer NOT NULL REFERENCES recipient(id),
    active           boolean NOT NULL DEFAULT true,
    is_user_active   boolean NOT NULL DEFAULT true,
    is_muted         boolean NOT NULL DEFAULT false,
    pin_to_top       boolean NOT NULL DEFAULT false,
    color            text NOT NULL DEFAULT '#c2c2c2',
    UNIQUE (user_profile_id, recipient_id)
);
CREATE INDEX subscription_recipient ON subscription (recipient_id) WHERE active;

CREATE TABLE message (
    id                bigserial PRIMARY KEY,
    realm_id          integer NOT NULL REFERENCES realm(id),
    sender_id         integer NOT NULL REFERENCES userprofile(id),
    recipient_id      integer NOT NULL REFERENCES recipient(id),
    subject           text NOT NULL DEFAULT '',
    content           text NOT NULL,
    rendered_content  text NOT NULL,
    date_sent         timestamptz NOT NULL DEFAULT now(),
    sending_client    text NOT NULL,
    type              smallint NOT NULL DEFAULT 1,
    is_me_message     boolean NOT NULL DEFAULT false
);
CREATE INDEX message_recipient_id ON message (recipient_id, id);
CREATE INDEX message_recipient_topic ON message (recipient_id, lower(subject), id);

-- One row per (user, message); flags use Zulip's bit positions.
CREATE TABLE usermessage (
    user_profile_id  integer NOT NULL,
    message_id       bigint NOT NULL,
    flags            bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_profile_id, message_id)
);
CREATE INDEX usermessage_unread ON usermessage (user_profile_id, message_id) WHERE (flags & 1) = 0;

-- System user groups (only what stream permissions reference so far).
CREATE TABLE usergroup (
    id          serial PRIMARY KEY,
    realm_id    integer NOT NULL REFERENCES realm(id),
    name        text NOT NULL,
    is_system_group boolean NOT NULL DEFAULT true,
    UNIQUE (realm_id, name)
);
ALTER TABLE stream ADD COLUMN can_remove_subscribers_group_id integer REFERENCES usergroup(id);

-- Streams every new user of the realm is subscribed to.
CREATE TABLE defaultstream (
    realm_id   integer NOT NULL REFERENCES realm(id),
    stream_id  integer NOT NULL REFERENCES stream(id),
    PRIMARY KEY (realm_id, stream_id)
);
