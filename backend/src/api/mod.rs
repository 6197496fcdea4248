//! Endpoint handlers, one file per group; `routes` calls them.

pub mod alert_words;
pub mod bots;
pub mod drafts;
pub mod events;
pub mod flags;
pub mod messages;
pub mod muted_users;
pub mod presence;
pub mod push;
pub mod reactions;
pub mod register;
pub mod register_sections;
pub mod server;
pub mod streams;
pub mod typing;
pub mod unsubscribe;
pub mod user_groups;
pub mod user_status;
pub mod user_topics;
pub mod users;
