//! Actions: the operations that change state and emit events, named after
//! Zulip's (`check_message`, `do_send_messages`).

pub mod edit;
pub mod flags;
pub mod send;
