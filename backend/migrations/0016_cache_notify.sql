-- Backend processes cache users by API key (backend/src/cache.rs); any
-- change to what they cache tells every process to drop its cache.
CREATE FUNCTION squall_cache_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('squall_cache', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER userprofile_cache AFTER UPDATE OF realm_id, email, delivery_email, full_name, role, is_active,
    is_bot, bot_type, long_term_idle, timezone, avatar_version, api_key, date_joined
    ON userprofile FOR EACH STATEMENT EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER userprofile_cache_delete AFTER DELETE ON userprofile
    FOR EACH STATEMENT EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER realm_cache AFTER UPDATE OF string_id, deactivated, name ON realm
    FOR EACH STATEMENT EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER stream_cache AFTER UPDATE OR DELETE ON stream
    FOR EACH STATEMENT EXECUTE FUNCTION squall_cache_notify();
