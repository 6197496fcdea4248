//! A core's queues and the two indexes over them: by owner and, for
//! realm-wide watchers, by realm. Every queue is keyed by its [`QueueId`]
//! (the parsed id, not its text), and every insertion and removal goes
//! through here so the indexes never disagree with the map.

use crate::descriptor::Descriptor;
use crate::fxhash::FxHashMap;
use squall_proto::ids::QueueId;

/// One core's queues.
#[derive(Default)]
pub struct Registry {
    queues: FxHashMap<QueueId, Descriptor>,
    by_user: FxHashMap<i64, Vec<QueueId>>,
    watchers: FxHashMap<i64, Vec<QueueId>>,
}

impl Registry {
    /// Adds a queue to the map and its indexes.
    pub(crate) fn insert(&mut self, id: QueueId, d: Descriptor) {
        self.by_user.entry(d.spec.user_id).or_default().push(id);
        if d.spec.is_realm_watcher() {
            self.watchers.entry(d.spec.realm_id).or_default().push(id);
        }
        self.queues.insert(id, d);
    }

    /// Removes a queue from the map and its indexes.
    pub(crate) fn remove(&mut self, id: QueueId) -> Option<Descriptor> {
        let d = self.queues.remove(&id)?;
        for (index, key) in [(&mut self.by_user, d.spec.user_id), (&mut self.watchers, d.spec.realm_id)] {
            if let Some(list) = index.get_mut(&key) {
                list.retain(|q| *q != id);
                if list.is_empty() {
                    index.remove(&key);
                }
            }
        }
        Some(d)
    }

    /// A queue.
    pub(crate) fn get(&self, id: QueueId) -> Option<&Descriptor> {
        self.queues.get(&id)
    }

    /// A queue, mutably.
    pub(crate) fn get_mut(&mut self, id: QueueId) -> Option<&mut Descriptor> {
        self.queues.get_mut(&id)
    }

    /// A queue if it belongs to `user_id` (anything else is "bad queue id").
    pub(crate) fn owned_mut(&mut self, id: QueueId, user_id: i64) -> Option<&mut Descriptor> {
        self.queues.get_mut(&id).filter(|d| d.spec.user_id == user_id)
    }

    /// The queues of a user, oldest first.
    pub(crate) fn of_user(&self, user_id: i64) -> &[QueueId] {
        self.by_user.get(&user_id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether a user has any queue here.
    pub(crate) fn has_user(&self, user_id: i64) -> bool {
        self.by_user.contains_key(&user_id)
    }

    /// Realm-wide watchers of a realm.
    pub(crate) fn watchers_of(&self, realm_id: i64) -> &[QueueId] {
        self.watchers.get(&realm_id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of queues.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Every queue, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&QueueId, &Descriptor)> {
        self.queues.iter()
    }

    /// Every queue, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&QueueId, &mut Descriptor)> {
        self.queues.iter_mut()
    }
}
