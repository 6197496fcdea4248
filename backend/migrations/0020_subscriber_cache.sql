-- The backend also caches each stream's subscribers with what the send
-- path reads about them (backend/src/cache.rs): a subscription that comes,
-- goes or changes a column the send path reads, and a user's personal
-- settings, tell every process to drop its caches. Row triggers, so that
-- an insert that added nothing (ON CONFLICT DO NOTHING) or an update that
-- changed nothing the caches hold stays quiet.
CREATE TRIGGER subscription_cache_rows AFTER INSERT OR DELETE ON subscription FOR EACH ROW
    EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER subscription_cache AFTER UPDATE ON subscription FOR EACH ROW
    WHEN ((OLD.user_profile_id, OLD.recipient_id, OLD.active, OLD.is_muted, OLD.push_notifications,
           OLD.email_notifications, OLD.wildcard_mentions_notify)
          IS DISTINCT FROM
          (NEW.user_profile_id, NEW.recipient_id, NEW.active, NEW.is_muted, NEW.push_notifications,
           NEW.email_notifications, NEW.wildcard_mentions_notify))
    EXECUTE FUNCTION squall_cache_notify();
CREATE TRIGGER userprofile_settings_cache AFTER UPDATE ON userprofile FOR EACH ROW
    WHEN (OLD.settings IS DISTINCT FROM NEW.settings)
    EXECUTE FUNCTION squall_cache_notify();
