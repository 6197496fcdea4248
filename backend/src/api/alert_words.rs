//! Alert words: `GET`, `POST` and `DELETE /users/me/alert_words`, the
//! register `alert_words` section and `alert_words` events. The send path
//! flags messages that have one with `has_alert_word` (`send/personal`).

use crate::users::User;
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// Longest alert word (Zulip's `AlertWord.MAX_WORD_LENGTH`).
const MAX_WORD_LENGTH: usize = 100;

/// The user's alert words, in the order they were added.
pub async fn alert_words(db: &impl GenericClient, user_id: i64) -> Result<Vec<String>, ApiError> {
    Ok(db
        .query("SELECT word FROM alertword WHERE user_profile_id = $1 ORDER BY id", &[&(user_id as i32)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The `alert_words` parameter: a list of strings, each at most 100
/// characters, trimmed, empty ones dropped (Zulip's `clean_alert_words`).
fn requested(p: &mut Params) -> Result<Vec<String>, ApiError> {
    let words = p.str_list("alert_words")?.ok_or_else(|| ApiError::missing("alert_words"))?;
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if w.chars().count() > MAX_WORD_LENGTH {
            return Err(ApiError::bad_request(format!(
                "alert_words[{i}] is too long (limit: {MAX_WORD_LENGTH} characters)"
            )));
        }
        let w = w.trim();
        if !w.is_empty() {
            out.push(w.to_owned());
        }
    }
    Ok(out)
}

/// `GET /users/me/alert_words`.
pub async fn list(app: &App, user: &User) -> ApiResult {
    let client = app.pool.get().await?;
    let mut m = Map::new();
    m.insert("alert_words".into(), json!(alert_words(&client, user.id).await?));
    Ok(m)
}

/// `POST /users/me/alert_words`: adds words (one per spelling, whatever the
/// case); answers with all of them.
pub async fn add(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let words = requested(p)?;
    change(app, user, |tx, uid| {
        Box::pin(async move {
            for w in &words {
                tx.execute(
                    "INSERT INTO alertword (user_profile_id, word) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&uid, w],
                )
                .await?;
            }
            Ok(())
        })
    })
    .await
}

/// `DELETE /users/me/alert_words`: removes words (whatever the case);
/// answers with those left.
pub async fn remove(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let words = requested(p)?;
    change(app, user, |tx, uid| {
        Box::pin(async move {
            let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
            tx.execute("DELETE FROM alertword WHERE user_profile_id = $1 AND lower(word) = ANY($2)", &[&uid, &lower])
                .await?;
            Ok(())
        })
    })
    .await
}

type Step<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send + 'a>>;

async fn change<F>(app: &App, user: &User, apply: F) -> ApiResult
where
    F: for<'a> FnOnce(&'a deadpool_postgres::Transaction<'a>, i32) -> Step<'a>,
{
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    apply(&tx, user.id as i32).await?;
    let words = alert_words(&tx, user.id).await?;
    tx.commit().await?;
    let event = json!({"type": "alert_words", "alert_words": words});
    app.tell(user.realm_id, event, vec![user.id], "alert_words").await;
    let mut m = Map::new();
    m.insert("alert_words".into(), Value::from(words));
    Ok(m)
}
