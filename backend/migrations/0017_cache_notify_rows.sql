-- Notify only when a cached value really changes (0016's statement
-- triggers also fired for updates that matched no row, and for a stream's
-- first_message_id, which the caches do not need: under load that emptied
-- the caches many times a second).
DROP TRIGGER userprofile_cache ON userprofile;
DROP TRIGGER stream_cache ON stream;
DROP TRIGGER realm_cache ON realm;
CREATE TRIGGER userprofile_cache AFTER UPDATE ON userprofile FOR EACH ROW
    WHEN ((OLD.realm_id, OLD.email, OLD.delivery_email, OLD.full_name, OLD.role, OLD.is_active, OLD.is_bot,
           OLD.bot_type, OLD.long_term_idle, OLD.timezone, OLD.avatar_version, OLD.api_key, OLD.date_joined)
          IS DISTINCT FROM
          (NEW.realm_id, NEW.email, NEW.delivery_email, NEW.full_name, NEW.role, NEW.is_active, NEW.is_bot,
           NEW.bot_type, NEW.long_term_idle, NEW.timezone, NEW.avatar_version, NEW.api_key, NEW.date_joined))
    EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER realm_cache AFTER UPDATE ON realm FOR EACH ROW
    WHEN ((OLD.string_id, OLD.deactivated, OLD.name) IS DISTINCT FROM (NEW.string_id, NEW.deactivated, NEW.name))
    EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER stream_cache AFTER UPDATE ON stream FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'first_message_id') IS DISTINCT FROM (to_jsonb(NEW) - 'first_message_id'))
    EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER stream_cache_delete AFTER DELETE ON stream
    FOR EACH STATEMENT EXECUTE FUNCTION squall_cache_notify();
