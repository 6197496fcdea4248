//! `POST /messages` (send) and `GET /messages` (history).

use crate::actions::send::addressee::{build_addressee, extract_private_recipients, UserRefs};
use crate::actions::send::{self, display_recipient, Outgoing};
use crate::streams;
use crate::users::{self, User};
use crate::App;
use serde_json::{Map, Value};
use squall_proto::api::{client_name_from_user_agent, ApiRequest, Params};
use squall_proto::envelope::{Destination, Variant, WideMessage};
use squall_proto::error::{ApiError, ApiResult};
use squall_proto::flags;
use std::collections::HashMap;

/// Anchor past every message id (Zulip's `LARGER_THAN_MAX_MESSAGE_ID`).
const LARGER_THAN_MAX_MESSAGE_ID: i64 = 10_000_000_000_000_000;
/// `num_before + num_after` limit.
const MAX_MESSAGES_PER_FETCH: i64 = 5000;

/// Longest client name kept (Zulip's `Client.name` holds 30 characters).
const MAX_CLIENT_NAME: usize = 30;

/// The client name of a request: the `client` parameter, else the UA's;
/// control characters dropped (PostgreSQL refuses NUL in text) and cut
/// to [`MAX_CLIENT_NAME`] characters.
pub fn client_name(req: &ApiRequest, p: &mut Params) -> String {
    clean_client_name(&p.str("client").unwrap_or_else(|| client_name_from_user_agent(req.header("user-agent"))))
}

fn clean_client_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(MAX_CLIENT_NAME).collect()
}

/// `POST /messages`.
pub async fn send(app: &App, user: &User, req: &ApiRequest, p: &mut Params) -> ApiResult {
    let kind = p.req_str("type")?;
    let to = p.str("to");
    let topic = p.str("topic");
    let subject = p.str("subject");
    let content = p.req_str("content")?;
    let queue_id = p.str("queue_id");
    let local_id = p.str("local_id");
    let read_by_sender = p.bool("read_by_sender")?;
    let client = client_name(req, p);
    let addressee = build_addressee(&kind, to.as_deref(), topic.as_deref().or(subject.as_deref()))?;
    // Nothing is stored that its recipients could not be told about.
    if let Err(e) = app.bus.ready().await {
        tracing::warn!(error = %e, "refusing a send: events cannot be delivered");
        return Err(ApiError::busy("Messages cannot be delivered right now; try again shortly"));
    }
    let id = send::send_message(
        app,
        user,
        Outgoing {
            to: addressee,
            content,
            client,
            queue_id,
            local_id,
            read_by_sender,
            skip_stream_access_check: false,
        },
    )
    .await?;
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    Ok(m)
}

/// A parsed narrow term.
enum Term {
    Stream(i64),
    Topic(String),
    Sender(i64),
    Dm(Vec<i64>),
    /// Group DMs that include this user (and the requester).
    GroupDmWith(i64),
    /// DMs (1:1 and group) that include this user.
    DmIncluding(i64),
    IsDm,
    Flag {
        bit: i64,
        set: bool,
    },
    /// One message.
    Id(i64),
    /// Topics marked resolved (`✔ ` in front).
    Resolved,
    /// Topics the user follows.
    Followed,
    /// `has:` — what the rendered message holds (Zulip keeps these as
    /// flags set at rendering; they follow from the HTML here).
    Has(&'static str),
    /// Full-text search (Zulip's `search`): the words, and the quoted
    /// phrases, which must appear as written.
    Search {
        words: String,
        phrases: Vec<String>,
    },
}

/// The text search runs over: the topic and the rendered content (HTML
/// tags are not words to PostgreSQL's parser).
const SEARCH_DOCUMENT: &str = "to_tsvector('english', m.subject || ' ' || m.rendered_content)";

/// `match_content` and `match_subject` of searched messages: the rendered
/// content and the (escaped) topic with each matching word in
/// `<span class="highlight">`, as Zulip marks them.
async fn search_highlights(
    db: &impl deadpool_postgres::GenericClient,
    ids: &[i64],
    words: &str,
) -> Result<HashMap<i64, (String, String)>, ApiError> {
    // Markers from Unicode's private use area, replaced afterwards (the
    // topic is escaped in between).
    const START: char = '\u{e000}';
    const STOP: char = '\u{e001}';
    let options = format!("HighlightAll=TRUE, StartSel={START}, StopSel={STOP}");
    let rows = db
        .query(
            "SELECT m.id, ts_headline('english', m.rendered_content, q, $3), ts_headline('english', m.subject, q, $3)
             FROM message m, plainto_tsquery('english', $2) q WHERE m.id = ANY($1)",
            &[&ids, &words, &options],
        )
        .await?;
    let mark = |s: &str| s.replace(START, "<span class=\"highlight\">").replace(STOP, "</span>");
    Ok(rows
        .iter()
        .map(|r| {
            let content: String = r.get(1);
            let subject: String = r.get(2);
            (r.get(0), (mark(&content), mark(&crate::markdown::escape_html(&subject))))
        })
        .collect())
}

/// Splits a `search` operand as Zulip does: `"quoted phrases"` and words.
fn search_terms(operand: &str) -> (String, Vec<String>) {
    let mut words = Vec::new();
    let mut phrases = Vec::new();
    let mut rest = operand;
    while let Some(start) = rest.find('"') {
        words.push(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('"') {
            Some(end) => {
                let phrase = after[..end].trim();
                if !phrase.is_empty() {
                    phrases.push(phrase.to_owned());
                }
                rest = &after[end + 1..];
            }
            None => {
                words.push(after);
                rest = "";
            }
        }
    }
    words.push(rest);
    let words = words.concat().split_whitespace().collect::<Vec<_>>().join(" ");
    (words, phrases)
}

fn bad_narrow(desc: &str) -> ApiError {
    ApiError::with_code("BAD_NARROW", format!("Invalid narrow operator: {desc}"))
}

/// Reads `narrow`: a list of `{operator, operand, negated?}` dicts or of
/// `[operator, operand]` pairs.
pub(crate) fn parse_narrow(v: Value) -> Result<Vec<(String, Value, bool)>, ApiError> {
    let Value::Array(items) = v else { return Err(ApiError::bad_request("narrow is not a list")) };
    items
        .into_iter()
        .map(|item| match item {
            Value::Array(pair) if pair.len() == 2 => {
                let op = pair[0].as_str().ok_or_else(|| ApiError::bad_request("Invalid narrow"))?.to_owned();
                Ok((op, pair[1].clone(), false))
            }
            Value::Object(o) => {
                let op =
                    o.get("operator").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("Invalid narrow"))?;
                let operand = o.get("operand").cloned().ok_or_else(|| ApiError::bad_request("Invalid narrow"))?;
                let negated = o.get("negated").and_then(Value::as_bool).unwrap_or(false);
                Ok((op.to_owned(), operand, negated))
            }
            _ => Err(ApiError::bad_request("Invalid narrow")),
        })
        .collect()
}

async fn resolve_terms(
    db: &impl deadpool_postgres::GenericClient,
    user: &User,
    raw: Vec<(String, Value, bool)>,
) -> Result<(Vec<(Term, bool)>, Option<streams::Stream>), ApiError> {
    let mut terms: Vec<(Term, bool)> = Vec::new();
    let mut stream = None;
    for (op, operand, negated) in raw {
        let op = op.to_lowercase();
        // Terms are pushed un-negated below and marked afterwards.
        let before = terms.len();
        let mut term = |t: Term| terms.push((t, false));
        let as_str = || operand.as_str().map(str::to_owned);
        // How Zulip names an operand in its errors.
        let shown = match &operand {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match op.as_str() {
            "stream" | "channel" => {
                let s = match &operand {
                    Value::Number(n) => streams::stream_by_id(db, user.realm_id, n.as_i64().unwrap_or(-1)).await?,
                    Value::String(name) => streams::stream_by_name(db, user.realm_id, name).await?,
                    _ => None,
                };
                let s = s.ok_or_else(|| bad_narrow(&format!("unknown channel {shown}")))?;
                term(Term::Stream(s.recipient_id));
                // Only a channel the narrow is in opens its whole history.
                if !negated {
                    stream = Some(s);
                }
            }
            "topic" | "subject" => term(Term::Topic(as_str().ok_or_else(|| bad_narrow("invalid topic"))?)),
            "sender" => {
                let u = match &operand {
                    Value::Number(n) => users::users_by_ids(db, user.realm_id, &[n.as_i64().unwrap_or(-1)]).await?,
                    Value::String(e) => users::users_by_emails(db, user.realm_id, std::slice::from_ref(e)).await?,
                    _ => vec![],
                };
                let u = u.first().ok_or_else(|| bad_narrow(&format!("unknown user {shown}")))?;
                term(Term::Sender(u.id));
            }
            // `pm_with` is the legacy spelling Zulip still accepts (the
            // terminal client sends it).
            "dm" | "pm-with" | "pm_with" => {
                let refs = match &operand {
                    Value::String(s) => extract_private_recipients(s)?,
                    Value::Array(_) => extract_private_recipients(&operand.to_string())?,
                    Value::Number(n) => UserRefs::Ids(vec![n.as_i64().unwrap_or(-1)]),
                    _ => return Err(bad_narrow(&format!("unknown user in {shown}"))),
                };
                let found = match &refs {
                    UserRefs::Emails(e) => users::users_by_emails(db, user.realm_id, e).await?,
                    UserRefs::Ids(i) => users::users_by_ids(db, user.realm_id, i).await?,
                };
                let wanted = match &refs {
                    UserRefs::Emails(e) => e.len(),
                    UserRefs::Ids(i) => i.len(),
                };
                if found.len() != wanted {
                    return Err(bad_narrow(&format!("unknown user in {shown}")));
                }
                let mut ids: Vec<i64> = found.iter().map(|u| u.id).chain([user.id]).collect();
                ids.sort_unstable();
                ids.dedup();
                term(Term::Dm(ids));
            }
            "group-pm-with" | "group_pm_with" | "dm-including" => {
                let u = match &operand {
                    Value::Number(n) => users::users_by_ids(db, user.realm_id, &[n.as_i64().unwrap_or(-1)]).await?,
                    Value::String(e) => users::users_by_emails(db, user.realm_id, std::slice::from_ref(e)).await?,
                    _ => vec![],
                };
                let u = u.first().ok_or_else(|| bad_narrow(&format!("unknown user {shown}")))?;
                term(if op == "dm-including" { Term::DmIncluding(u.id) } else { Term::GroupDmWith(u.id) });
            }
            "id" => {
                let id = match &operand {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
                    _ => None,
                };
                term(Term::Id(id.ok_or_else(|| bad_narrow("Invalid message ID"))?));
            }
            "has" => {
                let condition = match as_str().as_deref() {
                    // Any link, as Zulip counts them (channel links too).
                    Some("link") => "m.rendered_content LIKE '%<a %'",
                    // Inline image previews (Squall makes none yet).
                    Some("image") => "m.rendered_content LIKE '%message_inline_image%'",
                    Some("attachment") => "m.rendered_content LIKE '%/user_uploads/%'",
                    Some("reaction") => "EXISTS (SELECT 1 FROM reaction r WHERE r.message_id = m.id)",
                    _ => return Err(bad_narrow(&format!("unknown 'has' operand {shown}"))),
                };
                term(Term::Has(condition));
            }
            // Zulip's `near` only moves the anchor (the client's business).
            "near" => {}
            "search" => {
                let text = as_str().ok_or_else(|| bad_narrow("invalid search"))?;
                let (words, phrases) = search_terms(&text);
                term(Term::Search { words, phrases });
            }
            "is" => match as_str().as_deref() {
                Some("dm") | Some("private") => term(Term::IsDm),
                Some("starred") => term(Term::Flag { bit: flags::STARRED, set: true }),
                Some("unread") => term(Term::Flag { bit: flags::READ, set: false }),
                Some("mentioned") | Some("alerted") => term(Term::Flag { bit: flags::MENTIONED, set: true }),
                Some("resolved") => term(Term::Resolved),
                Some("followed") => term(Term::Followed),
                _ => return Err(bad_narrow(&format!("unknown 'is' operand {shown}"))),
            },
            _ => return Err(bad_narrow(&format!("unknown operator {op}"))),
        }
        if negated {
            for t in &mut terms[before..] {
                t.1 = true;
            }
        }
    }
    Ok((terms, stream))
}

/// `GET /messages`.
pub async fn get(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let anchor_raw = p.str("anchor");
    let use_first_unread = p.bool("use_first_unread_anchor")?.unwrap_or(false);
    let include_anchor = p.bool("include_anchor")?.unwrap_or(true);
    let num_before = p.int("num_before")?.unwrap_or(0);
    let num_after = p.int("num_after")?.unwrap_or(0);
    let narrow = p.json("narrow")?.map(parse_narrow).transpose()?.unwrap_or_default();
    let apply_markdown = p.bool("apply_markdown")?.unwrap_or(true);
    let client_gravatar = p.bool("client_gravatar")?.unwrap_or(true);
    if num_before < 0 || num_after < 0 {
        return Err(ApiError::bad_request("num_before or num_after is negative"));
    }
    if num_before + num_after > MAX_MESSAGES_PER_FETCH {
        return Err(ApiError::bad_request("Too many messages requested (maximum 5000)."));
    }
    let anchor = if use_first_unread { Some("first_unread".to_owned()) } else { anchor_raw };
    // The words of a search term: matches are highlighted in the results.
    let searched: Option<String> = narrow
        .iter()
        .find(|(op, _, negated)| op.eq_ignore_ascii_case("search") && !negated)
        .and_then(|(_, operand, _)| operand.as_str())
        .map(|text| search_terms(text).0)
        .filter(|words| !words.is_empty());
    let client = app.pool.get().await?;
    let range = fetch_range(&client, user, narrow, anchor.as_deref(), include_anchor, num_before, num_after).await?;
    let variant = Variant { apply_markdown, client_gravatar };
    let messages = load_messages(&client, user.realm_id, &range.rows).await?;
    let ids: Vec<i64> = range.rows.iter().map(|(id, _)| *id).collect();
    let reactions = super::reactions::reactions_of(&client, &ids).await?;
    let highlights = match &searched {
        Some(words) => search_highlights(&client, &ids, words).await?,
        None => HashMap::new(),
    };
    let list: Vec<String> = range
        .rows
        .iter()
        .filter_map(|(id, f)| {
            let json = messages.get(id)?.client_json(variant, Some(*f));
            let json = super::reactions::with_reactions(json, reactions.get(id));
            Some(match highlights.get(id) {
                // Appended to the message object: its text ends in `}`.
                Some((content, subject)) => format!(
                    "{},\"match_content\":{},\"match_subject\":{}}}",
                    json.strip_suffix('}').unwrap_or(&json),
                    Value::from(content.as_str()),
                    Value::from(subject.as_str())
                ),
                None => json,
            })
        })
        .collect();
    let messages_json: Value = serde_json::from_str(&format!("[{}]", list.join(",")))
        .map_err(|e| ApiError::internal(format!("message json: {e}")))?;
    let mut m = Map::new();
    m.insert("anchor".into(), range.anchor.into());
    m.insert("found_anchor".into(), range.found_anchor.into());
    m.insert("found_oldest".into(), range.found_oldest.into());
    m.insert("found_newest".into(), range.found_newest.into());
    m.insert("history_limited".into(), false.into());
    m.insert("messages".into(), messages_json);
    Ok(m)
}

/// A range of a narrow around an anchor, as `GET /messages` and
/// `POST /messages/flags/narrow` select it.
pub(crate) struct Range {
    /// (message id, the user's flags) in id order.
    pub rows: Vec<(i64, i64)>,
    /// The resolved anchor.
    pub anchor: i64,
    pub found_anchor: bool,
    pub found_oldest: bool,
    pub found_newest: bool,
}

/// Selects up to `num_before` messages before and `num_after` after the
/// anchor (`oldest`, `newest`, `first_unread` or an id; None is an error)
/// in `narrow`, as visible to `user`.
pub(crate) async fn fetch_range(
    client: &deadpool_postgres::Client,
    user: &User,
    narrow: Vec<(String, Value, bool)>,
    anchor: Option<&str>,
    include_anchor: bool,
    num_before: i64,
    num_after: i64,
) -> Result<Range, ApiError> {
    let (terms, stream) = resolve_terms(client, user, narrow).await?;

    // Public-stream narrows read the stream's whole history (rows missing for
    // this user show as read+historical); everything else reads the user's
    // own UserMessage rows.
    let stream_history = stream.as_ref().is_some_and(|s| s.is_public() && !user.is_guest());
    let mut sql = if stream_history {
        String::from(
            "FROM message m LEFT JOIN usermessage um ON um.message_id = m.id AND um.user_profile_id = $1 WHERE true",
        )
    } else {
        String::from(
            "FROM message m JOIN usermessage um ON um.message_id = m.id AND um.user_profile_id = $1 WHERE true",
        )
    };
    let mut args: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = vec![Box::new(user.id as i32)];
    for (t, negated) in &terms {
        let n = args.len() + 1;
        let cond = match t {
            Term::Stream(rid) => {
                args.push(Box::new(*rid as i32));
                format!("m.recipient_id = ${n}")
            }
            Term::Topic(topic) => {
                args.push(Box::new(topic.clone()));
                format!("lower(m.subject) = lower(${n})")
            }
            Term::Sender(id) => {
                args.push(Box::new(*id as i32));
                format!("m.sender_id = ${n}")
            }
            Term::IsDm => "(coalesce(um.flags, 0) & 2048) <> 0".to_owned(),
            Term::Dm(ids) => {
                // Participants of a message = sender ∪ personal recipient, or
                // the group's members.
                args.push(Box::new(ids.iter().map(|&i| i as i32).collect::<Vec<i32>>()));
                format!(
                    "(coalesce(um.flags, 0) & 2048) <> 0 AND ${n}::int[] = (
                        SELECT array_agg(DISTINCT x ORDER BY x) FROM (
                            SELECT m.sender_id AS x
                            UNION SELECT r.type_id FROM recipient r WHERE r.id = m.recipient_id AND r.type = 1
                            UNION SELECT s.user_profile_id FROM subscription s JOIN recipient r ON r.id = s.recipient_id
                                  WHERE s.recipient_id = m.recipient_id AND r.type = 3) p)"
                )
            }
            Term::GroupDmWith(other) => {
                args.push(Box::new(*other as i32));
                format!(
                    "m.recipient_id IN (SELECT s.recipient_id FROM subscription s JOIN recipient r ON r.id = s.recipient_id
                        WHERE r.type = 3 AND s.user_profile_id = ${n}
                        AND s.recipient_id IN (SELECT recipient_id FROM subscription WHERE user_profile_id = $1))"
                )
            }
            Term::DmIncluding(other) => {
                args.push(Box::new(*other as i32));
                format!(
                    "(coalesce(um.flags, 0) & 2048) <> 0 AND (m.sender_id = ${n}
                        OR m.recipient_id IN (SELECT r.id FROM recipient r WHERE r.type = 1 AND r.type_id = ${n})
                        OR m.recipient_id IN (SELECT s.recipient_id FROM subscription s JOIN recipient r
                            ON r.id = s.recipient_id WHERE r.type = 3 AND s.user_profile_id = ${n}))"
                )
            }
            Term::Flag { bit, set } => {
                let cmp = if *set { "<>" } else { "=" };
                format!("(coalesce(um.flags, {}) & {bit}) {cmp} 0", flags::READ | flags::HISTORICAL)
            }
            Term::Id(id) => {
                args.push(Box::new(*id));
                format!("m.id = ${n}")
            }
            Term::Resolved => "m.subject LIKE '✔ %'".to_owned(),
            Term::Has(condition) => (*condition).to_owned(),
            Term::Followed => "EXISTS (SELECT 1 FROM usertopic t JOIN stream s ON s.id = t.stream_id
                WHERE t.user_profile_id = $1 AND t.visibility_policy = 3
                  AND s.recipient_id = m.recipient_id AND lower(t.topic_name) = lower(m.subject))"
                .to_owned(),
            Term::Search { words, phrases } => {
                let mut parts = Vec::new();
                if !words.is_empty() {
                    args.push(Box::new(words.clone()));
                    parts.push(format!("{SEARCH_DOCUMENT} @@ plainto_tsquery('english', ${n})"));
                }
                for phrase in phrases {
                    let k = args.len() + 1;
                    let like = format!("%{}%", phrase.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                    args.push(Box::new(like));
                    parts.push(format!("(m.content ILIKE ${k} OR m.subject ILIKE ${k})"));
                }
                if parts.is_empty() {
                    "true".to_owned()
                } else {
                    parts.join(" AND ")
                }
            }
        };
        if *negated {
            sql.push_str(&format!(" AND NOT ({cond})"));
        } else {
            sql.push_str(&format!(" AND ({cond})"));
        }
    }

    let anchor = match anchor {
        None => return Err(ApiError::bad_request("Missing 'anchor' argument.")),
        Some("oldest") => Some(0),
        Some("newest") => Some(LARGER_THAN_MAX_MESSAGE_ID),
        Some("first_unread") => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| ApiError::bad_request("Invalid anchor"))?.max(0)),
    };
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        args.iter().map(|a| a.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let anchor = match anchor {
        Some(a) => a,
        None => {
            let q = format!("SELECT min(m.id) {sql} AND (coalesce(um.flags, 1) & 1) = 0");
            let first: Option<i64> = client.query_one(&q, &refs).await?.get(0);
            first.unwrap_or(LARGER_THAN_MAX_MESSAGE_ID)
        }
    };
    let cols = "m.id, coalesce(um.flags, 1024 | 1)";
    let before_q = format!("SELECT {cols} {sql} AND m.id < {anchor} ORDER BY m.id DESC LIMIT {num_before}");
    let after_q = format!("SELECT {cols} {sql} AND m.id >= {anchor} ORDER BY m.id ASC LIMIT {}", num_after + 1);
    let mut before: Vec<(i64, i64)> =
        client.query(&before_q, &refs).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    before.reverse();
    let after_all: Vec<(i64, i64)> =
        client.query(&after_q, &refs).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    // The after-query fetched one extra row: the anchor itself when it
    // exists, else the row that tells whether more messages follow.
    let anchor_row = after_all.first().filter(|(id, _)| *id == anchor).copied();
    let newer: Vec<(i64, i64)> = after_all.iter().filter(|(id, _)| *id != anchor).copied().collect();
    let found_anchor = include_anchor && anchor_row.is_some();
    // Anchored at an end ("oldest"/"newest"), that end is found by
    // definition, as in Zulip's post_process_limited_query.
    let found_newest = anchor >= LARGER_THAN_MAX_MESSAGE_ID
        || if anchor_row.is_some() { (newer.len() as i64) < num_after } else { (newer.len() as i64) <= num_after };
    let found_oldest = anchor == 0 || (before.len() as i64) < num_before;
    let after: Vec<(i64, i64)> =
        anchor_row.filter(|_| found_anchor).into_iter().chain(newer.into_iter().take(num_after as usize)).collect();
    let rows: Vec<(i64, i64)> = before.into_iter().chain(after).collect();
    Ok(Range { rows, anchor, found_anchor, found_oldest, found_newest })
}

/// Loads messages with their senders and display recipients.
async fn load_messages(
    db: &impl deadpool_postgres::GenericClient,
    realm_id: i64,
    rows: &[(i64, i64)],
) -> Result<HashMap<i64, WideMessage>, ApiError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let q = "SELECT m.id, m.sender_id, m.recipient_id, extract(epoch from m.date_sent)::bigint, m.sending_client,
                    m.subject, m.content, m.rendered_content, m.is_me_message, r.type, r.type_id, s.name,
                    extract(epoch from m.last_edit_time)::bigint, m.edit_history
             FROM message m JOIN recipient r ON r.id = m.recipient_id
             LEFT JOIN stream s ON r.type = 2 AND s.id = r.type_id
             WHERE m.id = ANY($1) AND m.realm_id = $2";
    let msgs = db.query(q, &[&ids, &(realm_id as i32)]).await?;
    // Every user we need: senders, personal recipients, group members.
    let mut user_ids: Vec<i64> = Vec::new();
    let mut group_rids: Vec<i32> = Vec::new();
    for r in &msgs {
        user_ids.push(r.get::<_, i32>(1) as i64);
        match r.get::<_, i16>(9) {
            1 => user_ids.push(r.get::<_, i32>(10) as i64),
            3 => group_rids.push(r.get(2)),
            _ => {}
        }
    }
    let groups = streams::group_members(db, &group_rids).await?;
    user_ids.extend(groups.values().flatten().copied());
    user_ids.sort_unstable();
    user_ids.dedup();
    let people: HashMap<i64, User> =
        users::users_by_ids(db, realm_id, &user_ids).await?.into_iter().map(|u| (u.id, u)).collect();
    let mut out = HashMap::new();
    for r in msgs {
        let id: i64 = r.get(0);
        let sender_id = r.get::<_, i32>(1) as i64;
        let Some(sender) = people.get(&sender_id) else { continue };
        let recipient_id = r.get::<_, i32>(2) as i64;
        let destination = match r.get::<_, i16>(9) {
            2 => Destination::Stream {
                stream_id: r.get::<_, i32>(10) as i64,
                name: r.get::<_, Option<String>>(11).unwrap_or_default(),
            },
            kind => {
                let mut ids: Vec<i64> = if kind == 1 {
                    vec![sender_id, r.get::<_, i32>(10) as i64]
                } else {
                    groups.get(&recipient_id).cloned().unwrap_or_default()
                };
                ids.sort_unstable();
                ids.dedup();
                let participants: Vec<User> = ids.iter().filter_map(|i| people.get(i).cloned()).collect();
                Destination::Private { participants: display_recipient(&participants) }
            }
        };
        out.insert(
            id,
            WideMessage {
                id,
                sender_id,
                sender_email: sender.email.clone(),
                sender_full_name: sender.full_name.clone(),
                sender_realm_str: sender.realm_string_id.clone(),
                recipient_id,
                timestamp: r.get(3),
                client: r.get(4),
                subject: r.get(5),
                content: r.get(6),
                rendered_content: r.get(7),
                is_me_message: r.get(8),
                avatar_url: sender.avatar_url(),
                avatar_is_gravatar: true,
                destination,
                last_edit_timestamp: r.get(12),
                edit_history: r.get(13),
            },
        );
    }
    Ok(out)
}

/// `PATCH /messages/{id}`.
pub async fn edit(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let topic = p.str("topic");
    let subject = p.str("subject");
    let req = crate::actions::edit::EditRequest {
        content: p.str("content"),
        topic: topic.or(subject),
        propagate_mode: p.str("propagate_mode").unwrap_or_else(|| "change_one".into()),
        stream_id: p.int("stream_id")?,
    };
    // Squall sends no notification-bot messages about moves (yet).
    let _ = p.bool("send_notification_to_old_thread")?;
    let _ = p.bool("send_notification_to_new_thread")?;
    crate::actions::edit::edit_message(app, user, id, req).await?;
    let mut m = Map::new();
    m.insert("detached_uploads".into(), Value::Array(vec![]));
    Ok(m)
}

/// `DELETE /messages/{id}`.
pub async fn delete(app: &App, user: &User, id: i64) -> ApiResult {
    crate::actions::edit::delete_message(app, user, id).await?;
    Ok(Map::new())
}

/// `GET /messages/{id}/history`: the message's edit history, oldest first.
pub async fn history(app: &App, user: &User, id: i64) -> ApiResult {
    let client = app.pool.get().await?;
    let target = crate::actions::edit::load_accessible(&client, user, id).await?;
    let mut out = Map::new();
    out.insert("message_history".into(), target.history().into());
    Ok(out)
}

/// `GET /messages/{id}`: one message the user may access, with their flags.
pub async fn get_one(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let apply_markdown = p.bool("apply_markdown")?.unwrap_or(true);
    let client = app.pool.get().await?;
    let target = crate::actions::edit::load_accessible(&client, user, id).await?;
    let bits: i64 = client
        .query_opt(
            "SELECT flags FROM usermessage WHERE user_profile_id = $1 AND message_id = $2",
            &[&(user.id as i32), &id],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or(flags::READ | flags::HISTORICAL);
    let messages = load_messages(&client, user.realm_id, &[(id, bits)]).await?;
    let m = messages.get(&id).ok_or_else(|| ApiError::bad_request("Invalid message(s)"))?;
    let reactions = super::reactions::reactions_of(&client, &[id]).await?;
    let json = super::reactions::with_reactions(
        m.client_json(Variant { apply_markdown, client_gravatar: false }, Some(bits)),
        reactions.get(&id),
    );
    let message: Value = serde_json::from_str(&json).map_err(|e| ApiError::internal(format!("message json: {e}")))?;
    let mut out = Map::new();
    out.insert("raw_content".into(), target.content.into());
    out.insert("message".into(), message);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_names_lose_control_characters_and_stop_at_30() {
        assert_eq!(super::clean_client_name("Zulip\0Bot\n"), "ZulipBot");
        assert_eq!(super::clean_client_name(&"é".repeat(40)).chars().count(), 30);
        assert_eq!(super::clean_client_name("website"), "website");
    }

    use super::search_terms;

    #[test]
    fn a_search_operand_splits_into_words_and_quoted_phrases() {
        assert_eq!(search_terms("cats  dogs"), ("cats dogs".to_owned(), vec![]));
        assert_eq!(
            search_terms(r#"pets "on the sofa" sleeping "  ""#),
            ("pets sleeping".to_owned(), vec!["on the sofa".to_owned()])
        );
        // An unclosed quote leaves its words as words.
        assert_eq!(search_terms(r#"a "b c"#), ("a b c".to_owned(), vec![]));
        assert_eq!(search_terms(r#""only a phrase""#), (String::new(), vec!["only a phrase".to_owned()]));
    }
}
