//! Actions: the operations that change state and emit events, named after
//! Zulip's. [`send`] (`check_message`, `do_send_messages`) and [`edit`]
//! share [`mention`] for rendering and mention flags; [`flags`] changes
//! UserMessage flags; [`users`] deactivates, reactivates and re-keys
//! accounts.

pub mod edit;
pub mod flags;
pub mod mention;
pub mod send;
pub mod users;
