//! Sending a message, in Zulip's steps: `api/messages` parses the request
//! into an [`Outgoing`] ([`addressee`]), then [`send_message`] normalises
//! the content, runs `check_message` (validate, resolve the target, render,
//! decide every row's flags; no writes) and `do_send_messages` (store,
//! commit, publish).

pub mod addressee;
mod check_message;
mod do_send_messages;
mod personal;

pub use addressee::Outgoing;
pub use do_send_messages::display_recipient;

use crate::users::User;
use crate::App;
use squall_proto::error::ApiError;

/// Sends `out` as `sender`. Returns the new message id.
///
/// The checks read outside a transaction (each statement sees committed
/// data, as it would inside one at Zulip's isolation level); the writes
/// are one statement, or one transaction when they need several.
pub async fn send_message(app: &App, sender: &User, out: Outgoing) -> Result<i64, ApiError> {
    // Before taking a connection: an empty message costs no round trip.
    let content = addressee::normalize_body(&out.content)?;
    let client = app.pool.get().await?;
    let checked = check_message::check_message(&client, &app.caches, sender, Outgoing { content, ..out }).await?;
    do_send_messages::do_send_messages(app, client, checked).await
}
