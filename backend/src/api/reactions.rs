//! Emoji reactions: `POST` and `DELETE /messages/{id}/reactions`, with
//! Zulip's checks, errors and `reaction` events, and the reactions listed
//! on messages.
//!
//! Unicode emoji are checked against the emoji Squall knows (the gemoji
//! set, which Markdown uses too): a code must be one of them; a name Squall
//! knows must be that code's. Zulip's own names differ in places (`thumbs_up`
//! where gemoji says `thumbsup`), so a name Squall does not know is taken
//! with a valid code rather than refused. There are no custom emoji yet, so
//! `realm_emoji` reactions are refused as Zulip refuses unknown ones.

use crate::actions::edit::{load_accessible, message_audience};
use crate::users::User;
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};
use std::collections::HashMap;

/// What a request names: `(emoji_name, emoji_code, reaction_type)`.
pub(crate) struct Emoji {
    pub(crate) name: String,
    pub(crate) code: String,
    pub(crate) kind: String,
}

/// Reads and checks the emoji of a request as Zulip's `check_emoji_request`
/// and `get_emoji_data` do. `name_required`: adding needs a name.
pub(crate) fn requested_emoji(p: &mut Params, name_required: bool) -> Result<Emoji, ApiError> {
    let name = if name_required { Some(p.req_str("emoji_name")?) } else { p.str("emoji_name") };
    let code = p.str("emoji_code");
    let kind = p.str("reaction_type");
    let (code, kind) = match (code, kind) {
        (Some(code), kind) => (code, kind.unwrap_or_else(|| "unicode_emoji".into())),
        (None, _) => {
            let name = name.as_deref().ok_or_else(|| ApiError::missing("emoji_name"))?;
            if name == "zulip" {
                ("zulip".to_owned(), "zulip_extra_emoji".to_owned())
            } else {
                let code = crate::markdown::emoji_code(name)
                    .ok_or_else(|| ApiError::bad_request(format!("Emoji '{name}' does not exist")))?;
                (code, "unicode_emoji".to_owned())
            }
        }
    };
    match kind.as_str() {
        "unicode_emoji" => {
            if !crate::markdown::is_emoji_code(&code) {
                return Err(ApiError::bad_request("Invalid emoji code."));
            }
            if let Some(n) = &name {
                if crate::markdown::emoji_code(n).is_some_and(|c| c != code) {
                    return Err(ApiError::bad_request("Invalid emoji name."));
                }
            }
        }
        "zulip_extra_emoji" => {
            if code != "zulip" {
                return Err(ApiError::bad_request("Invalid emoji code."));
            }
            if name.as_deref().is_some_and(|n| n != code) {
                return Err(ApiError::bad_request("Invalid emoji name."));
            }
        }
        "realm_emoji" => return Err(ApiError::bad_request("Invalid custom emoji.")),
        _ => return Err(ApiError::bad_request("Invalid reaction_type")),
    }
    let name = name.unwrap_or_else(|| code.clone());
    Ok(Emoji { name, code, kind })
}

/// `POST /messages/{id}/reactions`.
pub async fn add(app: &App, user: &User, message_id: i64, p: &mut Params) -> ApiResult {
    let emoji = requested_emoji(p, true)?;
    change(app, user, message_id, emoji, true).await
}

/// `DELETE /messages/{id}/reactions`.
pub async fn remove(app: &App, user: &User, message_id: i64, p: &mut Params) -> ApiResult {
    let emoji = requested_emoji(p, false)?;
    change(app, user, message_id, emoji, false).await
}

async fn change(app: &App, user: &User, message_id: i64, emoji: Emoji, adding: bool) -> ApiResult {
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let target = load_accessible(&tx, user, message_id).await?;
    let name = if adding {
        let inserted = tx
            .execute(
                "INSERT INTO reaction (message_id, user_profile_id, emoji_name, emoji_code, reaction_type)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&message_id, &(user.id as i32), &emoji.name, &emoji.code, &emoji.kind],
            )
            .await?;
        if inserted == 0 {
            return Err(ApiError::with_code("REACTION_ALREADY_EXISTS", "Reaction already exists."));
        }
        emoji.name
    } else {
        // The name in the event is the one the reaction was added with.
        let removed = tx
            .query_opt(
                "DELETE FROM reaction WHERE message_id = $1 AND user_profile_id = $2 AND emoji_code = $3
                 AND reaction_type = $4 RETURNING emoji_name",
                &[&message_id, &(user.id as i32), &emoji.code, &emoji.kind],
            )
            .await?;
        match removed {
            Some(row) => row.get(0),
            None => return Err(ApiError::with_code("REACTION_DOES_NOT_EXIST", "Reaction doesn't exist.")),
        }
    };
    let audience = message_audience(&tx, message_id, target.stream()).await?;
    tx.commit().await?;
    let event = json!({
        "type": "reaction",
        "op": if adding { "add" } else { "remove" },
        "message_id": message_id,
        "emoji_name": name,
        "emoji_code": emoji.code,
        "reaction_type": emoji.kind,
        "user_id": user.id,
        "user": {"user_id": user.id, "email": user.email, "full_name": user.full_name},
    });
    app.tell(user.realm_id, event, audience, "reaction").await;
    Ok(Map::new())
}

/// The reactions on `ids`, each message's as its `reactions` list (with
/// the deprecated `user` object clients such as zulip-terminal still read).
pub async fn reactions_of(db: &impl GenericClient, ids: &[i64]) -> Result<HashMap<i64, Value>, ApiError> {
    let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db
        .query(
            "SELECT r.message_id, r.emoji_name, r.emoji_code, r.reaction_type, u.id, u.email, u.full_name
             FROM reaction r JOIN userprofile u ON u.id = r.user_profile_id
             WHERE r.message_id = ANY($1) ORDER BY r.id",
            &[&ids],
        )
        .await?;
    for r in rows {
        let uid = r.get::<_, i32>(4) as i64;
        out.entry(r.get(0)).or_default().push(json!({
            "emoji_name": r.get::<_, String>(1),
            "emoji_code": r.get::<_, String>(2),
            "reaction_type": r.get::<_, String>(3),
            "user_id": uid,
            "user": {"id": uid, "email": r.get::<_, String>(5), "full_name": r.get::<_, String>(6), "is_mirror_dummy": false},
        }));
    }
    Ok(out.into_iter().map(|(id, list)| (id, Value::Array(list))).collect())
}

/// Puts `reactions` into a message's client JSON (which lists none).
pub fn with_reactions(json: String, reactions: Option<&Value>) -> String {
    match reactions {
        // Inside the JSON text a string cannot hold an unescaped quote, so
        // this matches the key only.
        Some(list) => json.replacen(r#""reactions":[]"#, &format!(r#""reactions":{list}"#), 1),
        None => json,
    }
}
