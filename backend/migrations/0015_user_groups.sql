-- User groups (Zulip's NamedUserGroup): the system groups already exist
-- (their members follow from roles); user-defined groups keep their
-- members and subgroups here.
ALTER TABLE usergroup ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE usergroup ADD COLUMN date_created timestamptz;
ALTER TABLE usergroup ADD COLUMN creator_id integer REFERENCES userprofile(id);
ALTER TABLE usergroup ADD COLUMN deactivated boolean NOT NULL DEFAULT false;
-- Who may mention the group (a group id); NULL means the realm's role:everyone.
ALTER TABLE usergroup ADD COLUMN can_mention_group_id integer REFERENCES usergroup(id);
CREATE TABLE usergroupmembership (
    user_group_id    integer NOT NULL REFERENCES usergroup(id),
    user_profile_id  integer NOT NULL REFERENCES userprofile(id),
    PRIMARY KEY (user_group_id, user_profile_id)
);
CREATE INDEX usergroupmembership_user ON usergroupmembership (user_profile_id);
CREATE TABLE groupgroupmembership (
    supergroup_id  integer NOT NULL REFERENCES usergroup(id),
    subgroup_id    integer NOT NULL REFERENCES usergroup(id),
    PRIMARY KEY (supergroup_id, subgroup_id)
);
-- The system groups realms created before this lacked.
INSERT INTO usergroup (realm_id, name)
SELECT r.id, g.name FROM realm r CROSS JOIN (VALUES ('role:fullmembers'), ('role:nobody'), ('role:internet')) AS g(name)
ON CONFLICT DO NOTHING;
-- The muted-sender lookup at send time goes by the muted user.
CREATE INDEX muteduser_muted ON muteduser (muted_user_id);
-- Archived channels (DELETE /streams/{id}).
ALTER TABLE stream ADD COLUMN deactivated boolean NOT NULL DEFAULT false;
UPDATE usergroup SET description = CASE name
    WHEN 'role:internet' THEN 'Everyone on the Internet'
    WHEN 'role:everyone' THEN 'Everyone in this organization, including guests'
    WHEN 'role:members' THEN 'Members of this organization, not including guests'
    WHEN 'role:fullmembers' THEN 'Members of this organization, not including new accounts and guests'
    WHEN 'role:moderators' THEN 'Moderators of this organization, including administrators'
    WHEN 'role:administrators' THEN 'Administrators of this organization, including owners'
    WHEN 'role:owners' THEN 'Owners of this organization'
    WHEN 'role:nobody' THEN 'Nobody'
    ELSE description END
WHERE is_system_group;
-- The realm's message editing policy (PATCH /realm); NULL limit = none.
ALTER TABLE realm ADD COLUMN allow_message_editing boolean NOT NULL DEFAULT true;
ALTER TABLE realm ADD COLUMN message_content_edit_limit_seconds integer DEFAULT 600;
ALTER TABLE realm ADD COLUMN message_content_delete_limit_seconds integer DEFAULT 600;
ALTER TABLE realm ADD COLUMN move_messages_within_stream_limit_seconds integer DEFAULT 604800;
-- The send path reads a topic's policies by stream and topic.
CREATE INDEX usertopic_stream_topic ON usertopic (stream_id, lower(topic_name));
