-- squall: each statement alone, outside a transaction
-- Messages with a mobile notification showing (Zulip's
-- active_mobile_push_notification flag, bit 12): few at any time, found
-- when they are read so the notification can be removed. Built
-- CONCURRENTLY: UserMessage is the biggest table, and a plain CREATE INDEX
-- would stop every send while it scans it. A build interrupted earlier
-- leaves an invalid index, dropped first.
DROP INDEX CONCURRENTLY IF EXISTS usermessage_active_push;
CREATE INDEX CONCURRENTLY usermessage_active_push ON usermessage (user_profile_id, message_id) WHERE (flags & 4096) <> 0;
