//! User groups (Zulip's `NamedUserGroup`): the realm's system groups, whose
//! members follow from roles, and groups users create, with members and
//! subgroups stored. What register lists, what `@*group*` mentions reach.

use crate::streams::PROVISIONAL_MEMBER;
use deadpool_postgres::GenericClient;
use serde_json::{json, Value};
use squall_proto::error::ApiError;
use squall_proto::user::role;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Every realm's system groups with their descriptions, each a subgroup
/// of the one before it in the role order (`role:owners` ⊂
/// `role:administrators` ⊂ ... ⊂ `role:everyone` ⊂ `role:internet`), and
/// `role:nobody`.
pub const SYSTEM_GROUPS: [(&str, &str); 8] = [
    ("role:internet", "Everyone on the Internet"),
    ("role:everyone", "Everyone in this organization, including guests"),
    ("role:members", "Members of this organization, not including guests"),
    ("role:fullmembers", "Members of this organization, not including new accounts and guests"),
    ("role:moderators", "Moderators of this organization, including administrators"),
    ("role:administrators", "Administrators of this organization, including owners"),
    ("role:owners", "Owners of this organization"),
    ("role:nobody", "Nobody"),
];

/// Longest group name (Zulip's `MAX_NAME_LENGTH`).
pub const MAX_NAME_LENGTH: usize = 100;
/// Longest group description.
pub const MAX_DESCRIPTION_LENGTH: usize = 1024;

/// A realm's system groups by name.
#[derive(Debug, Default, Clone)]
pub struct SystemGroups {
    by_name: HashMap<String, i64>,
}

impl SystemGroups {
    /// The id of system group `name`; 0 if the realm lacks it (it never
    /// does once migrations have run).
    pub fn id(&self, name: &str) -> i64 {
        self.by_name.get(name).copied().unwrap_or(0)
    }
}

impl SystemGroups {
    /// The system groups among `groups` (a [`realm_groups`] answer).
    pub fn of(groups: &[Group]) -> Self {
        SystemGroups { by_name: groups.iter().filter(|g| g.is_system_group).map(|g| (g.name.clone(), g.id)).collect() }
    }
}

/// The realm's system groups (when the groups themselves are not needed).
pub async fn system_groups(db: &impl GenericClient, realm_id: i64) -> Result<SystemGroups, ApiError> {
    let rows = db
        .query("SELECT id, name FROM usergroup WHERE realm_id = $1 AND is_system_group", &[&(realm_id as i32)])
        .await?;
    Ok(SystemGroups { by_name: rows.iter().map(|r| (r.get::<_, String>(1), r.get::<_, i32>(0) as i64)).collect() })
}

/// A group as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Id.
    pub id: i64,
    /// Name (system groups: `role:...`).
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time, unix seconds; none for system groups.
    pub date_created: Option<i64>,
    /// Creator; none for system groups.
    pub creator_id: Option<i64>,
    /// A system group.
    pub is_system_group: bool,
    /// Deactivated.
    pub deactivated: bool,
    /// Direct members (active users).
    pub members: Vec<i64>,
    /// Direct subgroups.
    pub direct_subgroup_ids: Vec<i64>,
    /// The group whose members may mention this one.
    pub can_mention_group: i64,
}

impl Group {
    /// Zulip's user group dictionary. Squall's permission rules: the
    /// creator manages a group and adds its members (and administrators,
    /// through the realm's `can_manage_all_groups`); nobody joins by
    /// themselves; anyone may leave. System groups: nobody does anything.
    pub fn api_dict(&self, system: &SystemGroups) -> Value {
        let managers = match (self.is_system_group, self.creator_id) {
            (false, Some(creator)) => json!({"direct_members": [creator], "direct_subgroups": []}),
            _ => json!(system.id("role:nobody")),
        };
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "date_created": self.date_created,
            "creator_id": self.creator_id,
            "is_system_group": self.is_system_group,
            "deactivated": self.deactivated,
            "members": self.members,
            "direct_subgroup_ids": self.direct_subgroup_ids,
            "can_mention_group": self.can_mention_group,
            "can_manage_group": managers,
            "can_add_members_group": managers,
            "can_join_group": system.id("role:nobody"),
            "can_leave_group": system.id(if self.is_system_group { "role:nobody" } else { "role:everyone" }),
        })
    }
}

/// The direct members of a system group: users whose role is exactly the
/// group's (full members: members past the waiting period).
fn system_direct_members(name: &str, people: &[(i64, i32, bool)]) -> Vec<i64> {
    let with = |want: i32| people.iter().filter(|p| p.1 == want).map(|p| p.0).collect();
    match name {
        "role:owners" => with(role::OWNER),
        "role:administrators" => with(role::ADMIN),
        "role:moderators" => with(role::MODERATOR),
        "role:fullmembers" => people.iter().filter(|p| p.1 == role::MEMBER && p.2).map(|p| p.0).collect(),
        "role:members" => with(role::MEMBER),
        "role:everyone" => with(role::GUEST),
        _ => Vec::new(),
    }
}

/// The subgroup of a system group in the role order.
fn system_subgroup(name: &str) -> Option<&'static str> {
    Some(match name {
        "role:internet" => "role:everyone",
        "role:everyone" => "role:members",
        "role:members" => "role:fullmembers",
        "role:fullmembers" => "role:moderators",
        "role:moderators" => "role:administrators",
        "role:administrators" => "role:owners",
        _ => return None,
    })
}

/// Every group of the realm (deactivated ones too when asked), in id order.
pub async fn realm_groups(
    db: &impl GenericClient,
    realm_id: i64,
    include_deactivated: bool,
) -> Result<Vec<Group>, ApiError> {
    let realm = realm_id as i32;
    let groups = db
        .query(
            "SELECT g.id, g.name, g.description, extract(epoch from g.date_created)::bigint, g.creator_id,
                    g.is_system_group, g.deactivated, coalesce(g.can_mention_group_id, e.id)
             FROM usergroup g LEFT JOIN usergroup e ON e.realm_id = g.realm_id AND e.name = 'role:everyone'
             WHERE g.realm_id = $1 AND ($2 OR NOT g.deactivated) ORDER BY g.id",
            &[&realm, &include_deactivated],
        )
        .await?;
    let people: Vec<(i64, i32, bool)> = db
        .query(
            &format!(
                "SELECT u.id, u.role, NOT ({PROVISIONAL_MEMBER}) FROM userprofile u JOIN realm r ON r.id = u.realm_id
                 WHERE u.realm_id = $1 AND u.is_active ORDER BY u.id"
            ),
            &[&realm],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, i32>(0) as i64, r.get::<_, i32>(1), r.get::<_, bool>(2)))
        .collect();
    let mut members: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in db
        .query(
            "SELECT m.user_group_id, m.user_profile_id FROM usergroupmembership m
             JOIN usergroup g ON g.id = m.user_group_id JOIN userprofile u ON u.id = m.user_profile_id
             WHERE g.realm_id = $1 AND u.is_active ORDER BY 1, 2",
            &[&realm],
        )
        .await?
    {
        members.entry(r.get::<_, i32>(0) as i64).or_default().push(r.get::<_, i32>(1) as i64);
    }
    let mut subgroups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in db
        .query(
            "SELECT s.supergroup_id, s.subgroup_id FROM groupgroupmembership s
             JOIN usergroup g ON g.id = s.supergroup_id WHERE g.realm_id = $1 ORDER BY 1, 2",
            &[&realm],
        )
        .await?
    {
        subgroups.entry(r.get::<_, i32>(0) as i64).or_default().push(r.get::<_, i32>(1) as i64);
    }
    let ids: HashMap<String, i64> = groups
        .iter()
        .filter(|r| r.get::<_, bool>(5))
        .map(|r| (r.get::<_, String>(1), r.get::<_, i32>(0) as i64))
        .collect();
    Ok(groups
        .iter()
        .map(|r| {
            let id = r.get::<_, i32>(0) as i64;
            let name: String = r.get(1);
            let is_system_group: bool = r.get(5);
            let (direct_members, direct_subgroup_ids) = if is_system_group {
                let sub = system_subgroup(&name).and_then(|s| ids.get(s)).copied();
                (system_direct_members(&name, &people), sub.into_iter().collect())
            } else {
                (members.remove(&id).unwrap_or_default(), subgroups.remove(&id).unwrap_or_default())
            };
            Group {
                id,
                name,
                description: r.get(2),
                date_created: r.get(3),
                creator_id: r.get::<_, Option<i32>>(4).map(i64::from),
                is_system_group,
                deactivated: r.get(6),
                members: direct_members,
                direct_subgroup_ids,
                // Nobody may mention a system group.
                can_mention_group: if is_system_group {
                    ids.get("role:nobody").copied().unwrap_or_default()
                } else {
                    r.get::<_, Option<i32>>(7).unwrap_or_default() as i64
                },
            }
        })
        .collect())
}

/// `group` and, recursively, its subgroups.
pub fn recursive_subgroups(groups: &[Group], group: i64) -> BTreeSet<i64> {
    let by_id: HashMap<i64, &Group> = groups.iter().map(|g| (g.id, g)).collect();
    let mut seen = BTreeSet::new();
    let mut todo = vec![group];
    while let Some(g) = todo.pop() {
        if !seen.insert(g) {
            continue;
        }
        if let Some(g) = by_id.get(&g) {
            todo.extend(g.direct_subgroup_ids.iter().copied());
        }
    }
    seen
}

/// Everyone in `group` and, recursively, its subgroups.
pub fn recursive_members(groups: &[Group], group: i64) -> BTreeSet<i64> {
    let all = recursive_subgroups(groups, group);
    groups.iter().filter(|g| all.contains(&g.id)).flat_map(|g| g.members.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: i64, members: &[i64], subgroups: &[i64]) -> Group {
        Group {
            id,
            name: format!("g{id}"),
            description: String::new(),
            date_created: None,
            creator_id: None,
            is_system_group: false,
            deactivated: false,
            members: members.to_vec(),
            direct_subgroup_ids: subgroups.to_vec(),
            can_mention_group: 0,
        }
    }

    #[test]
    fn members_are_collected_through_subgroups_and_cycles_end() {
        let groups = [group(1, &[10], &[2]), group(2, &[20, 10], &[3]), group(3, &[30], &[1])];
        assert_eq!(recursive_members(&groups, 1), BTreeSet::from([10, 20, 30]));
        assert_eq!(recursive_members(&groups, 9), BTreeSet::new());
        assert_eq!(recursive_subgroups(&groups, 2), BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn system_groups_follow_roles() {
        let people =
            [(1, role::OWNER, true), (2, role::MEMBER, false), (3, role::MEMBER, true), (4, role::GUEST, true)];
        assert_eq!(system_direct_members("role:owners", &people), vec![1]);
        assert_eq!(system_direct_members("role:members", &people), vec![2, 3]);
        assert_eq!(system_direct_members("role:fullmembers", &people), vec![3], "2 is still provisional");
        assert_eq!(system_direct_members("role:everyone", &people), vec![4]);
        assert_eq!(system_direct_members("role:nobody", &people), Vec::<i64>::new());
        assert_eq!(system_subgroup("role:everyone"), Some("role:members"));
        assert_eq!(system_subgroup("role:owners"), None);
    }
}
