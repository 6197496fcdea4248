-- Per-topic visibility policies (Zulip's UserTopic): 1 muted, 2 unmuted, 3 followed.
CREATE TABLE usertopic (
    user_profile_id   integer NOT NULL REFERENCES userprofile(id),
    stream_id         integer NOT NULL REFERENCES stream(id),
    topic_name        text NOT NULL,
    last_updated      timestamptz NOT NULL DEFAULT now(),
    visibility_policy smallint NOT NULL
);
CREATE UNIQUE INDEX usertopic_user_stream_topic ON usertopic (user_profile_id, stream_id, lower(topic_name));
