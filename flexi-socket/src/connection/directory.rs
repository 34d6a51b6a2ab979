//! The directory of a server's open connections: by id, by key, by group
//! and by client type, kept in step at register, classification,
//! `set_key`, `join`, `leave` and unregister, so that a lookup by key is
//! one hash look-up and a broadcast to a group or a client type visits its
//! members only.
//!
//! Plain data under the caller's lock ([`Connections`](super::Connections)
//! holds it): no I/O, no waiting, nothing sent from here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::client_type::ClientType;
use crate::config::KeyPolicy;

/// A key or a group name, shared between the indexes and the entry.
pub(crate) type Name = Arc<str>;

/// The indexes over the open connections, whose handles are `C` (a
/// [`Connection`](super::Connection) in the server; anything in the tests).
#[derive(Debug)]
pub(crate) struct Directory<C> {
    open: HashMap<u64, Entry<C>>,
    keys: HashMap<Name, u64>,
    groups: HashMap<Name, HashSet<u64>>,
    types: HashMap<ClientType, HashSet<u64>>,
}

/// One open connection and what it is filed under. Every open connection
/// has one in a hash table that keeps an eighth or more of its places
/// empty: two words, so that a connection filed under nothing (the usual
/// case) costs no more.
#[derive(Debug)]
struct Entry<C> {
    connection: C,
    /// From the first key, group or client type on.
    filed: Option<Box<Filed>>,
}

/// What a connection is filed under.
#[derive(Debug, Default)]
struct Filed {
    key: Option<Name>,
    /// Few per connection, usually none: a vector costs nothing until used.
    groups: Vec<Name>,
    client_type: Option<ClientType>,
}

impl<C> Entry<C> {
    fn filed(&mut self) -> &mut Filed {
        self.filed.get_or_insert_default()
    }

    fn key(&self) -> Option<&Name> {
        self.filed.as_ref()?.key.as_ref()
    }

    fn groups(&self) -> &[Name] {
        self.filed.as_ref().map_or(&[], |filed| &filed.groups)
    }
}

/// What [`Directory::claim`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim<C> {
    /// The key is the connection's now; `replaced` held it before.
    Taken { replaced: Option<C> },
    /// Another connection keeps it ([`KeyPolicy::OldestWins`]).
    Refused,
    /// The connection is not (or no longer) open.
    NotOpen,
}

impl<C> Default for Directory<C> {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            keys: HashMap::new(),
            groups: HashMap::new(),
            types: HashMap::new(),
        }
    }
}

impl<C: Clone> Directory<C> {
    pub(crate) fn insert(&mut self, id: u64, connection: C) {
        self.open.insert(
            id,
            Entry {
                connection,
                filed: None,
            },
        );
    }

    /// Takes connection `id` out of every index; whether it was open.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(entry) = self.open.remove(&id) else {
            return false;
        };
        let Some(filed) = entry.filed else {
            return true;
        };
        if let Some(key) = filed.key {
            self.keys.remove(&key);
        }
        for group in filed.groups {
            remove_member(&mut self.groups, &group, id);
        }
        if let Some(client_type) = filed.client_type {
            remove_member(&mut self.types, &client_type, id);
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    pub(crate) fn get(&self, id: u64) -> Option<&C> {
        self.open.get(&id).map(|entry| &entry.connection)
    }

    pub(crate) fn connections(&self) -> impl Iterator<Item = &C> {
        self.open.values().map(|entry| &entry.connection)
    }

    /// Files connection `id` under `client_type` (once, at classification).
    pub(crate) fn classified(&mut self, id: u64, client_type: &ClientType) {
        let Some(entry) = self.open.get_mut(&id) else {
            return;
        };
        if let Some(old) = entry.filed().client_type.replace(client_type.clone()) {
            remove_member(&mut self.types, &old, id);
        }
        self.types
            .entry(client_type.clone())
            .or_default()
            .insert(id);
    }

    /// Gives `key` to connection `id` under `policy`; the key it held
    /// before, if another, is released.
    pub(crate) fn claim(&mut self, id: u64, key: &str, policy: KeyPolicy) -> Claim<C> {
        if !self.open.contains_key(&id) {
            return Claim::NotOpen;
        }
        let holder = self.keys.get(key).copied();
        if holder == Some(id) {
            return Claim::Taken { replaced: None };
        }
        if holder.is_some() && policy == KeyPolicy::OldestWins {
            return Claim::Refused;
        }
        let replaced = holder.and_then(|holder| {
            let entry = self.open.get_mut(&holder)?;
            entry.filed().key = None;
            Some(entry.connection.clone())
        });
        self.release(id);
        let key: Name = Arc::from(key);
        self.keys.insert(Arc::clone(&key), id);
        if let Some(entry) = self.open.get_mut(&id) {
            entry.filed().key = Some(key);
        }
        Claim::Taken { replaced }
    }

    /// Connection `id` gives up its key, if it has one; the key it had.
    pub(crate) fn release(&mut self, id: u64) -> Option<Name> {
        let key = self.open.get_mut(&id)?.filed.as_mut()?.key.take()?;
        self.keys.remove(&key);
        Some(key)
    }

    pub(crate) fn key_of(&self, id: u64) -> Option<&Name> {
        self.open.get(&id)?.key()
    }

    pub(crate) fn by_key(&self, key: &str) -> Option<&C> {
        self.get(*self.keys.get(key)?)
    }

    /// Every key held, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Name> {
        self.keys.keys()
    }

    /// Adds connection `id` to `group`; false if it is not open.
    pub(crate) fn join(&mut self, id: u64, group: &str) -> bool {
        let Some(entry) = self.open.get_mut(&id) else {
            return false;
        };
        if entry.groups().iter().any(|joined| &**joined == group) {
            return true;
        }
        let group: Name = Arc::from(group);
        entry.filed().groups.push(Arc::clone(&group));
        self.groups.entry(group).or_default().insert(id);
        true
    }

    /// Takes connection `id` out of `group`; whether it was in it.
    pub(crate) fn leave(&mut self, id: u64, group: &str) -> bool {
        let Some(entry) = self.open.get_mut(&id) else {
            return false;
        };
        let Some(index) = entry.groups().iter().position(|joined| &**joined == group) else {
            return false;
        };
        entry.filed().groups.swap_remove(index);
        remove_member(&mut self.groups, group, id);
        true
    }

    pub(crate) fn groups_of(&self, id: u64) -> &[Name] {
        self.open.get(&id).map_or(&[], Entry::groups)
    }

    /// Every group with a member, in no particular order.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &Name> {
        self.groups.keys()
    }

    /// The members of `group`, visiting no one else.
    pub(crate) fn in_group(&self, group: &str) -> Vec<C> {
        self.members(self.groups.get(group))
    }

    /// The connections classified as `client_type`, visiting no one else.
    pub(crate) fn of_type(&self, client_type: &ClientType) -> Vec<C> {
        self.members(self.types.get(client_type))
    }

    fn members(&self, ids: Option<&HashSet<u64>>) -> Vec<C> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.get(*id).cloned())
            .collect()
    }

    /// Whether every index is empty: nothing is left of closed connections.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.open.is_empty()
            && self.keys.is_empty()
            && self.groups.is_empty()
            && self.types.is_empty()
    }
}

/// Takes `id` out of the member set `name`, and the set out of `index`
/// once empty: an index holds no names of groups nobody is in.
fn remove_member<Q, K>(index: &mut HashMap<K, HashSet<u64>>, name: &Q, id: u64)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(members) = index.get_mut(name) {
        members.remove(&id);
        if members.is_empty() {
            index.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_open(ids: &[u64]) -> Directory<u64> {
        let mut directory = Directory::default();
        for &id in ids {
            directory.insert(id, id);
        }
        directory
    }

    #[test]
    fn newest_wins_hands_the_key_over_and_names_the_older() {
        let mut directory = with_open(&[1, 2]);
        let policy = KeyPolicy::NewestWins;
        assert_eq!(
            directory.claim(1, "42", policy),
            Claim::Taken { replaced: None }
        );
        assert_eq!(
            directory.claim(2, "42", policy),
            Claim::Taken { replaced: Some(1) }
        );
        assert_eq!(directory.by_key("42"), Some(&2));
        assert_eq!(directory.key_of(1), None);
        // The older one closing later does not take the key from the newer.
        directory.remove(1);
        assert_eq!(directory.by_key("42"), Some(&2));
    }

    #[test]
    fn oldest_wins_refuses_and_leaves_both_as_they_were() {
        let mut directory = with_open(&[1, 2]);
        let policy = KeyPolicy::OldestWins;
        directory.claim(1, "42", policy);
        assert_eq!(directory.claim(2, "42", policy), Claim::Refused);
        assert_eq!(directory.by_key("42"), Some(&1));
        assert_eq!(directory.key_of(2), None);
    }

    #[test]
    fn a_new_key_releases_the_old_one() {
        let mut directory = with_open(&[1]);
        directory.claim(1, "a", KeyPolicy::NewestWins);
        directory.claim(1, "b", KeyPolicy::NewestWins);
        assert_eq!(directory.by_key("a"), None);
        assert_eq!(directory.by_key("b"), Some(&1));
        assert_eq!(directory.keys().count(), 1);
    }

    #[test]
    fn nothing_is_filed_for_a_connection_that_is_not_open() {
        let mut directory = with_open(&[]);
        assert_eq!(
            directory.claim(9, "k", KeyPolicy::NewestWins),
            Claim::NotOpen
        );
        assert!(!directory.join(9, "g"));
        directory.classified(9, &ClientType::from("001"));
        assert!(directory.is_empty());
    }

    #[test]
    fn groups_and_types_list_their_members_only() {
        let mut directory = with_open(&[1, 2, 3]);
        directory.join(1, "north");
        directory.join(2, "north");
        directory.join(2, "north");
        directory.join(3, "south");
        directory.classified(1, &ClientType::from("001"));
        directory.classified(3, &ClientType::from("001"));
        let mut north = directory.in_group("north");
        north.sort_unstable();
        assert_eq!(north, [1, 2]);
        assert_eq!(directory.groups_of(2).len(), 1, "joined once");
        let mut panels = directory.of_type(&ClientType::from("001"));
        panels.sort_unstable();
        assert_eq!(panels, [1, 3]);
        assert!(directory.leave(2, "north"));
        assert!(!directory.leave(2, "north"));
        assert_eq!(directory.in_group("north"), [1]);
    }

    #[test]
    fn closing_takes_a_connection_out_of_every_index() {
        let mut directory = with_open(&[1, 2]);
        for id in [1, 2] {
            directory.claim(id, &format!("key-{id}"), KeyPolicy::NewestWins);
            directory.join(id, "everyone");
            directory.join(id, &format!("own-{id}"));
            directory.classified(id, &ClientType::from("001"));
        }
        directory.leave(1, "own-1");
        assert!(directory.remove(1));
        assert!(!directory.remove(1));
        assert!(directory.remove(2));
        assert!(directory.is_empty(), "{directory:?}");
    }
}
