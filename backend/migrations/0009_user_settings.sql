-- Personal settings that differ from Zulip's defaults (see backend/src/settings.rs).
ALTER TABLE userprofile ADD COLUMN settings jsonb NOT NULL DEFAULT '{}';
