//! Sending a message, in Zulip's steps: `api/messages` parses the request
//! into an [`Outgoing`] ([`addressee`]), then [`send_message`] normalises
//! the content, runs `check_message` (validate, resolve the target, render,
//! decide every row's flags; no writes) and `do_send_messages` (store,
//! commit, publish) in one transaction.

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
pub async fn send_message(app: &App, sender: &User, out: Outgoing) -> Result<i64, ApiError> {
    // Before taking a connection: an empty message costs no round trip.
    let content = addressee::normalize_body(&out.content)?;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let checked = check_message::check_message(&tx, sender, Outgoing { content, ..out }).await?;
    do_send_messages::do_send_messages(app, tx, checked).await
}
