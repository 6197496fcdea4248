//! Mentions and channel links, resolved one way for a new message
//! (`send/check_message`) and for a content edit (`edit`): the content is
//! rendered with `@**Name**` / `@**Name|id**` looked up among the realm's
//! active users and `#**channel**` among the streams the author can see,
//! then each recipient's mention flags follow from the result, including
//! whom a `@**topic**` reaches.

use crate::db::messages;
use crate::markdown::{self, GroupTarget, MentionRef, MentionTarget, Rendered, Resolvers, StreamTarget};
use crate::streams;
use crate::user_groups::{self, Group};
use crate::users::User;
use deadpool_postgres::GenericClient;
use squall_proto::error::ApiError;
use squall_proto::flags;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The UserMessage flags that mentions set; an edit recomputes exactly these.
pub(crate) const MENTION_FLAGS: i64 =
    flags::MENTIONED | flags::STREAM_WILDCARD_MENTIONED | flags::TOPIC_WILDCARD_MENTIONED;

/// The realm's active users that a message's mentions could name (Zulip's
/// `MentionData`).
#[derive(Debug, Default)]
struct MentionData {
    /// By lower-cased full name; several users under one name make it ambiguous.
    by_name: HashMap<String, Vec<MentionTarget>>,
    by_id: HashMap<i64, MentionTarget>,
    /// Those of them that are outgoing-webhook bots.
    webhook_bots: BTreeSet<i64>,
}

/// Content rendered for its author, and whom it mentions.
#[derive(Debug, Clone, Default)]
pub(crate) struct RenderedMessage {
    /// HTML and the mentioned users and wildcards.
    pub rendered: Rendered,
    /// With a `@**topic**` in a stream: everyone who has posted in the
    /// topic, the author included. Empty otherwise.
    pub topic_participants: BTreeSet<i64>,
    /// Users a non-silent `@*group*` mentions, each with the smallest such
    /// group (Zulip's `mentioned_user_group_id`).
    pub group_mentioned: BTreeMap<i64, i64>,
    /// Those of them in a mentioned group of at most
    /// [`SMALL_GROUP`] members.
    pub small_group_mentioned: BTreeSet<i64>,
    /// Outgoing-webhook bots mentioned by name (their servers get the
    /// message), known from the mention lookup itself.
    pub mentioned_webhook_bots: BTreeSet<i64>,
}

/// A mention of a group this small brings its soft-deactivated members
/// back (Zulip's `max_user_group_size_for_soft_reactivation`... 11).
pub(crate) const SMALL_GROUP: usize = 11;

impl RenderedMessage {
    /// The mention flags `user_id`'s UserMessage row gets (within
    /// [`MENTION_FLAGS`]).
    pub fn mention_flags(&self, user_id: i64) -> i64 {
        let mut f = 0;
        if self.rendered.stream_wildcard {
            f |= flags::STREAM_WILDCARD_MENTIONED;
        }
        if self.rendered.mentioned_user_ids.contains(&user_id) || self.group_mentioned.contains_key(&user_id) {
            f |= flags::MENTIONED;
        }
        if self.topic_participants.contains(&user_id) {
            f |= flags::TOPIC_WILDCARD_MENTIONED;
        }
        f
    }

    /// Whether the message brings `user_id` back from soft deactivation:
    /// a personal or topic mention, or a small group's.
    pub fn brings_back(&self, user_id: i64) -> bool {
        self.rendered.mentioned_user_ids.contains(&user_id)
            || self.topic_participants.contains(&user_id)
            || self.small_group_mentioned.contains(&user_id)
    }

    /// The group through which `user_id` is mentioned, when only a group
    /// mentions them.
    pub fn mentioned_user_group_id(&self, user_id: i64) -> Option<i64> {
        if self.rendered.mentioned_user_ids.contains(&user_id) {
            return None;
        }
        self.group_mentioned.get(&user_id).copied()
    }
}

/// Renders `content` as `author` writes it and finds whom it mentions.
/// `topic` is the stream recipient and topic the message is in (`None` for
/// direct messages), which a `@**topic**` mention needs.
pub(crate) async fn render_incoming_message(
    db: &impl GenericClient,
    author: &User,
    content: &str,
    topic: Option<(i64, &str)>,
) -> Result<RenderedMessage, ApiError> {
    let (rendered, (group_mentioned, small_group_mentioned), webhook_bots) =
        render_message(db, author, content).await?;
    let mentioned_webhook_bots = webhook_bots.intersection(&rendered.mentioned_user_ids).copied().collect();
    let mut topic_participants = BTreeSet::new();
    if let (true, Some((recipient_id, topic))) = (rendered.topic_wildcard, topic) {
        topic_participants = messages::topic_participants(db, recipient_id, topic).await?;
        topic_participants.insert(author.id);
    }
    Ok(RenderedMessage { rendered, topic_participants, group_mentioned, small_group_mentioned, mentioned_webhook_bots })
}

/// Renders message content with user mentions resolved against the
/// realm's active users, group mentions against its active groups and
/// channel links against the channels the author can see. Also returns
/// whom the group mentions reach (see [`RenderedMessage::group_mentioned`]).
async fn render_message(
    db: &impl GenericClient,
    author: &User,
    content: &str,
) -> Result<(Rendered, GroupReach, BTreeSet<i64>), ApiError> {
    let candidates = mention_candidates(db, author.realm_id, &markdown::mention_refs(content)).await?;
    let names: Vec<String> = markdown::channel_refs(content).iter().map(|n| n.to_lowercase()).collect();
    let channels: HashMap<String, StreamTarget> = streams::linkable_streams(db, author, &names)
        .await?
        .into_iter()
        .map(|(id, name)| (name.to_lowercase(), StreamTarget { id, name }))
        .collect();
    // Group names match exactly, as in Zulip.
    let group_names = markdown::group_refs(content);
    let groups =
        if group_names.is_empty() { Vec::new() } else { user_groups::realm_groups(db, author.realm_id, false).await? };
    let named: HashMap<String, &Group> =
        groups.iter().filter(|g| group_names.contains(&g.name)).map(|g| (g.name.clone(), g)).collect();
    let rendered = markdown::render_resolved(
        content,
        &Resolvers {
            user: &|r| resolve_mention(&candidates, r),
            channel: &|name| channels.get(&name.to_lowercase()).cloned(),
            group: &|name| named.get(name).map(|g| GroupTarget { id: g.id, name: g.name.clone() }),
        },
    );
    let group_mentioned = group_mentions(&groups, &rendered.mentioned_group_ids, author.id)?;
    Ok((rendered, group_mentioned, candidates.webhook_bots))
}

/// Whom group mentions reach, each with the smallest group mentioning
/// them, and those in a small group.
type GroupReach = (BTreeMap<i64, i64>, BTreeSet<i64>);

/// Whom the mentioned groups reach, each user with the smallest group
/// (fewest members, then lowest id) that mentions them; an error if the
/// author may not mention one of them.
fn group_mentions(groups: &[Group], mentioned: &BTreeSet<i64>, author: i64) -> Result<GroupReach, ApiError> {
    let mut reached: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    let mut small = BTreeSet::new();
    for g in groups.iter().filter(|g| mentioned.contains(&g.id)) {
        if !user_groups::recursive_members(groups, g.can_mention_group).contains(&author) {
            return Err(ApiError::bad_request(format!("You are not allowed to mention user group '{}'.", g.name)));
        }
        let members = user_groups::recursive_members(groups, g.id);
        let size = members.len();
        if size <= SMALL_GROUP {
            small.extend(members.iter().copied());
        }
        for u in members {
            let best = reached.entry(u).or_insert((size, g.id));
            *best = (*best).min((size, g.id));
        }
    }
    Ok((reached.into_iter().map(|(u, (_, g))| (u, g)).collect(), small))
}

/// Active users of the realm that `refs` could name: by lower-cased full
/// name and by id.
async fn mention_candidates(
    db: &impl GenericClient,
    realm_id: i64,
    refs: &BTreeSet<MentionRef>,
) -> Result<MentionData, ApiError> {
    let mut names = Vec::new();
    let mut ids = Vec::new();
    for r in refs {
        match r {
            MentionRef::Name(n) => names.push(n.to_lowercase()),
            MentionRef::Id(i) => {
                if let Ok(i) = i32::try_from(*i) {
                    ids.push(i)
                }
            }
        }
    }
    let mut data = MentionData::default();
    if names.is_empty() && ids.is_empty() {
        return Ok(data);
    }
    let rows = db
        .query(
            "SELECT id, full_name, bot_type IS NOT DISTINCT FROM 3 FROM userprofile
             WHERE realm_id = $1 AND is_active AND (lower(full_name) = ANY($2) OR id = ANY($3))",
            &[&(realm_id as i32), &names, &ids],
        )
        .await?;
    for r in rows {
        let id = r.get::<_, i32>(0) as i64;
        if r.get::<_, bool>(2) {
            data.webhook_bots.insert(id);
        }
        data.add(MentionTarget { id, full_name: r.get(1) });
    }
    Ok(data)
}

impl MentionData {
    fn add(&mut self, t: MentionTarget) {
        self.by_name.entry(t.full_name.to_lowercase()).or_default().push(t.clone());
        self.by_id.insert(t.id, t);
    }
}

/// The user `r` names, if exactly one does.
fn resolve_mention(data: &MentionData, r: &MentionRef) -> Option<MentionTarget> {
    match r {
        MentionRef::Id(id) => data.by_id.get(id).cloned(),
        // An ambiguous name (two users share it) mentions nobody, as in Zulip.
        MentionRef::Name(n) => match data.by_name.get(&n.to_lowercase()) {
            Some(list) if list.len() == 1 => list.first().cloned(),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: i64, name: &str) -> MentionTarget {
        MentionTarget { id, full_name: name.into() }
    }

    #[test]
    fn names_resolve_case_insensitively_unless_ambiguous() {
        let mut data = MentionData::default();
        data.add(target(1, "Iago"));
        data.add(target(2, "Twin"));
        data.add(target(3, "twin"));
        assert_eq!(resolve_mention(&data, &MentionRef::Name("IAGO".into())), Some(target(1, "Iago")));
        assert_eq!(resolve_mention(&data, &MentionRef::Name("Twin".into())), None, "ambiguous");
        assert_eq!(resolve_mention(&data, &MentionRef::Id(3)), Some(target(3, "twin")), "ids disambiguate");
        assert_eq!(resolve_mention(&data, &MentionRef::Id(9)), None);
        assert_eq!(resolve_mention(&data, &MentionRef::Name("nobody".into())), None);
    }

    #[test]
    fn mention_flags_per_user() {
        let mut m = RenderedMessage::default();
        m.rendered.mentioned_user_ids.insert(1);
        m.topic_participants.insert(2);
        assert_eq!(m.mention_flags(1), flags::MENTIONED);
        assert_eq!(m.mention_flags(2), flags::TOPIC_WILDCARD_MENTIONED);
        assert_eq!(m.mention_flags(3), 0);
        m.rendered.stream_wildcard = true;
        assert_eq!(m.mention_flags(3), flags::STREAM_WILDCARD_MENTIONED);
        assert_eq!(m.mention_flags(1) & !MENTION_FLAGS, 0);
    }
}
