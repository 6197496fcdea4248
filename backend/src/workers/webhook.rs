//! Outgoing webhooks (Zulip's `OutgoingWebhookWorker` and
//! `zerver/lib/outgoing_webhook.py`): a message that mentions an
//! outgoing-webhook bot in a stream, or is a direct message to one, is
//! POSTed to each of the bot's services; a reply with `content` is posted
//! back as the bot, in the same conversation.
//!
//! A service that times out or cannot be reached is retried (by the queue
//! runtime); on the last try the bot says "Failure! Bot is unavailable" in
//! the conversation and tells its owner. Any other answer is final: a
//! non-2xx status or an unreadable reply is reported the same way, and not
//! retried (as Zulip does).

use super::{field, net, Failure, Workers};
use crate::actions::send::{addressee::build_addressee, send_message, Outgoing};
use crate::api::bots::interface;
use crate::users::User;
use serde_json::{json, Value};

/// How the bots' servers are told who calls.
const USER_AGENT: &str = concat!("ZulipOutgoingWebhook/", env!("CARGO_PKG_VERSION"), " (Squall)");
/// Most of a service's answer read.
const MAX_ANSWER: usize = 1 << 20;
/// Most of an answer quoted to the bot's owner.
const MAX_QUOTED: usize = 2000;

/// Does one item of `outgoing_webhooks`; `final_try` says whether the
/// runtime will give up if this try fails.
pub async fn handle(w: &Workers, item: &Value, final_try: bool) -> Result<(), Failure> {
    let bot_id: i64 = field(item, "user_profile_id")?;
    let trigger: String = field(item, "trigger")?;
    let message = item.get("message").cloned().ok_or_else(|| Failure::Permanent("item without a message".into()))?;
    let db = w.app.pool.get().await?;
    let Some(realm) = db.query_opt("SELECT realm_id FROM userprofile WHERE id = $1", &[&(bot_id as i32)]).await? else {
        return Ok(());
    };
    let realm_id = realm.get::<_, i32>(0) as i64;
    let Some(bot) = crate::users::users_by_ids(&db, realm_id, &[bot_id]).await?.into_iter().next() else {
        return Ok(());
    };
    if !bot.is_active {
        return Ok(());
    }
    let services = db
        .query(
            "SELECT name, base_url, token, interface FROM service WHERE user_profile_id = $1 ORDER BY id",
            &[&(bot_id as i32)],
        )
        .await?;
    let owner: Option<i32> =
        db.query_one("SELECT bot_owner_id FROM userprofile WHERE id = $1", &[&(bot_id as i32)]).await?.get(0);
    drop(db);
    for s in services {
        let service = Service { name: s.get(0), url: s.get(1), token: s.get(2), interface: s.get(3) };
        call_service(w, &bot, owner, &service, &message, &trigger, final_try).await?;
    }
    Ok(())
}

struct Service {
    name: String,
    url: String,
    token: String,
    interface: i16,
}

async fn call_service(
    w: &Workers,
    bot: &User,
    owner: Option<i32>,
    service: &Service,
    message: &Value,
    trigger: &str,
    final_try: bool,
) -> Result<(), Failure> {
    let content = message["content"].as_str().unwrap_or_default();
    let timeout = std::time::Duration::from_secs(w.cfg.outgoing_webhook_timeout_secs.max(1));
    let url = reqwest::Url::parse(&service.url).map_err(|e| Failure::Permanent(format!("{}: {e}", service.url)))?;
    let client = match net::pinned_client(&url, w.cfg.outgoing_webhook_allow_private, timeout, USER_AGENT).await {
        Ok(c) => c,
        Err(e) if e.transient => {
            if final_try {
                fail(w, bot, message, "Bot is unavailable").await;
                notify_owner(w, bot, owner, message, "The name of the webhook's server could not be looked up.").await;
            }
            return Err(Failure::Retry(e.msg));
        }
        Err(e) => {
            fail(w, bot, message, "Bot is unavailable").await;
            notify_owner(
                w,
                bot,
                owner,
                message,
                "The URL configured for the webhook is for a private or disallowed network.",
            )
            .await;
            return Err(Failure::Permanent(e.msg));
        }
    };
    let request = client.post(url);
    let request = if service.interface == interface::SLACK {
        if message["type"] != "stream" {
            fail(w, bot, message, "Slack outgoing webhooks don't support direct messages.").await;
            return Ok(());
        }
        request.form(&slack_payload(bot, service, message, trigger))
    } else {
        request.json(&json!({
            "data": content,
            "message": message,
            "bot_email": bot.email,
            "bot_full_name": bot.full_name,
            "token": service.token,
            "trigger": trigger,
        }))
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let (why, retry) = if e.is_timeout() {
                (format!("Request timed out after {} seconds.", w.cfg.outgoing_webhook_timeout_secs), true)
            } else if e.is_connect() {
                ("A connection error occurred. Is my bot server down?".to_owned(), true)
            } else {
                (
                    format!(
                        "When trying to send a request to the webhook service, an exception occurred:\n```\n{e}\n```"
                    ),
                    false,
                )
            };
            let error = format!("service {:?} ({}): {e}", service.name, service.url);
            if !retry {
                let text = format!(
                    "An exception of type *RequestException* occurred for message `{content}`! \
                     See the Zulip server logs for more information."
                );
                fail(w, bot, message, &text).await;
                notify_owner(w, bot, owner, message, &why).await;
                return Err(Failure::Permanent(error));
            }
            if final_try {
                fail(w, bot, message, "Bot is unavailable").await;
                notify_owner(w, bot, owner, message, &why).await;
            }
            return Err(Failure::Retry(error));
        }
    };
    let status = response.status();
    let mut response = response;
    let body = net::read_capped(&mut response, MAX_ANSWER).await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        fail(w, bot, message, &format!("Third party responded with {}", status.as_u16())).await;
        let mut why = format!("The webhook got a response with status code *{}*.", status.as_u16());
        if !body.is_empty() {
            let shown: String = body.chars().take(MAX_QUOTED).collect();
            why.push_str(&format!("\nThe response contains the following payload:\n```\n{shown:?}\n```"));
        }
        notify_owner(w, bot, owner, message, &why).await;
        return Ok(());
    }
    match reply_of(&body, service.interface) {
        Ok(None) => Ok(()),
        Ok(Some(reply)) => {
            if let Err(e) = respond(w, bot, message, &reply).await {
                tracing::warn!(bot = bot.id, error = %e.msg, "outgoing webhook: the bot's reply could not be posted");
            }
            Ok(())
        }
        Err(e) => {
            fail(w, bot, message, e).await;
            notify_owner(w, bot, owner, message, &format!("The webhook's answer was not usable: {e}")).await;
            Ok(())
        }
    }
}

/// What a service's 2xx answer asks the bot to say, if anything (Zulip's
/// `process_success_response` and its interfaces' `process_success`:
/// `response_string`, then `content`; Slack's `text`).
pub fn reply_of(body: &str, iface: i16) -> Result<Option<String>, &'static str> {
    if body.is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(body).map_err(|_| "Invalid JSON in response")?;
    // The legacy bot server answers an empty JSON string.
    if v == Value::String(String::new()) {
        return Ok(None);
    }
    let Some(o) = v.as_object() else { return Err("Invalid response format") };
    if o.get("response_not_required").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let keys: &[&str] = if iface == interface::SLACK { &["text"] } else { &["response_string", "content"] };
    let content = keys.iter().find_map(|k| o.get(*k));
    let text = match content {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        // Zulip takes `str()` of whatever it is.
        Some(other) => other.to_string(),
    };
    Ok((!text.trim().is_empty()).then_some(text))
}

/// Slack's outgoing-webhook form (Zulip's `SlackOutgoingWebhookService`).
fn slack_payload(bot: &User, service: &Service, message: &Value, trigger: &str) -> Vec<(&'static str, String)> {
    let s = |k: &str| message[k].as_str().unwrap_or_default().to_owned();
    let n = |k: &str| message[k].as_i64().unwrap_or_default().to_string();
    vec![
        ("token", service.token.clone()),
        ("team_id", format!("T{}", bot.realm_id)),
        ("team_domain", bot.realm_string_id.clone()),
        ("channel_id", format!("C{}", n("stream_id"))),
        ("channel_name", s("display_recipient")),
        ("thread_ts", n("timestamp")),
        ("timestamp", n("timestamp")),
        ("user_id", format!("U{}", n("sender_id"))),
        ("user_name", s("sender_full_name")),
        ("text", s("content")),
        ("trigger_word", trigger.to_owned()),
        ("service_id", bot.id.to_string()),
    ]
}

/// Posts `content` as the bot into the message's conversation.
async fn respond(
    w: &Workers,
    bot: &User,
    message: &Value,
    content: &str,
) -> Result<i64, squall_proto::error::ApiError> {
    let to = if message["type"] == "stream" {
        let stream = message["stream_id"].as_i64().unwrap_or_default().to_string();
        build_addressee("stream", Some(&stream), Some(message["subject"].as_str().unwrap_or_default()))?
    } else {
        let emails: Vec<&str> = message["display_recipient"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["email"].as_str()).collect())
            .unwrap_or_default();
        build_addressee("private", Some(&json!(emails).to_string()), None)?
    };
    let out = Outgoing {
        to,
        content: content.to_owned(),
        client: "OutgoingWebhookResponse".into(),
        queue_id: None,
        local_id: None,
        read_by_sender: None,
        skip_stream_access_check: true,
    };
    send_message(&w.app, bot, out).await
}

/// Zulip's `fail_with_message`: "Failure! …" in the conversation.
async fn fail(w: &Workers, bot: &User, message: &Value, text: &str) {
    if let Err(e) = respond(w, bot, message, &format!("Failure! {text}")).await {
        tracing::warn!(bot = bot.id, error = %e.msg, "outgoing webhook: could not post the failure message");
    }
}

/// Zulip's `notify_bot_owner`: a direct message from the bot to its owner.
async fn notify_owner(w: &Workers, bot: &User, owner: Option<i32>, message: &Value, why: &str) {
    let Some(owner) = owner else { return };
    let realm_url = crate::api::server::realm_url(&w.app, &bot.realm_string_id);
    let id = message["id"].as_i64().unwrap_or_default();
    let url = if message["type"] == "stream" {
        format!(
            "{realm_url}{}/topic/{}/near/{id}",
            crate::markdown::channel_narrow(
                message["stream_id"].as_i64().unwrap_or_default(),
                message["display_recipient"].as_str().unwrap_or_default()
            ),
            crate::markdown::hash_encode(message["subject"].as_str().unwrap_or_default()),
        )
    } else {
        format!("{realm_url}/#narrow/dm/{}-dm/near/{id}", message["sender_id"])
    };
    let content =
        format!("[A message]({url}) to your bot @_**{}** triggered an outgoing webhook.\n{why}", bot.full_name);
    let out = Outgoing {
        to: crate::actions::send::addressee::Addressee::Direct(crate::actions::send::addressee::UserRefs::Ids(vec![
            owner as i64,
        ])),
        content,
        client: "OutgoingWebhookResponse".into(),
        queue_id: None,
        local_id: None,
        read_by_sender: None,
        skip_stream_access_check: false,
    };
    if let Err(e) = send_message(&w.app, bot, out).await {
        tracing::warn!(bot = bot.id, owner, error = %e.msg, "outgoing webhook: could not tell the bot's owner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_as_zulip_reads_them() {
        let g = interface::GENERIC;
        assert_eq!(reply_of("", g), Ok(None));
        assert_eq!(reply_of("\"\"", g), Ok(None));
        assert_eq!(reply_of(r#"{"content": "hi"}"#, g), Ok(Some("hi".into())));
        assert_eq!(reply_of(r#"{"response_string": "old", "content": "new"}"#, g), Ok(Some("old".into())));
        assert_eq!(reply_of(r#"{"content": 42}"#, g), Ok(Some("42".into())));
        assert_eq!(reply_of(r#"{"content": "hi", "response_not_required": true}"#, g), Ok(None));
        assert_eq!(reply_of(r#"{"content": "  "}"#, g), Ok(None));
        assert_eq!(reply_of(r#"{}"#, g), Ok(None));
        assert_eq!(reply_of(r#"{"text": "slack"}"#, interface::SLACK), Ok(Some("slack".into())));
        assert_eq!(reply_of("not json", g), Err("Invalid JSON in response"));
        assert_eq!(reply_of("[1]", g), Err("Invalid response format"));
    }
}
