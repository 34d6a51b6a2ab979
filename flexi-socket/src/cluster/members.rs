//! The other nodes this one knows of: those that said hello and not
//! goodbye. Anyone who can publish on the presence subject can say hello,
//! so a name is taken only if it is one a node could have (it becomes a
//! subject a broadcast is sent to: a `*` would reach every node) and the
//! list is bounded.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::subject::valid_name;
use crate::sync;

/// How many other nodes a node keeps track of at most. Far above any real
/// cluster of socket servers; a flood of invented names stops here.
pub(super) const MAX_MEMBERS: usize = 1024;

/// What became of a hello.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// A node not known before.
    Joined,
    /// Known already.
    Known,
    /// Not a node name (empty, too long, or not letters, digits, `-`, `_`).
    InvalidName,
    /// [`MAX_MEMBERS`] are known already.
    Full,
}

#[derive(Debug, Default)]
pub(super) struct Members(Mutex<BTreeSet<String>>);

impl Members {
    pub(super) fn admit(&self, node: &str) -> Admission {
        if !valid_name(node) {
            return Admission::InvalidName;
        }
        let mut members = sync::lock(&self.0);
        if members.contains(node) {
            Admission::Known
        } else if members.len() >= MAX_MEMBERS {
            Admission::Full
        } else {
            members.insert(node.to_owned());
            Admission::Joined
        }
    }

    /// Whether `node` was known.
    pub(super) fn remove(&self, node: &str) -> bool {
        sync::lock(&self.0).remove(node)
    }

    pub(super) fn list(&self) -> Vec<String> {
        sync::lock(&self.0).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_or_otherwise_invalid_name_is_not_taken() {
        let members = Members::default();
        for name in ["*", ">", "a.b", "", "a b", &"x".repeat(65)] {
            assert_eq!(members.admit(name), Admission::InvalidName, "{name:?}");
        }
        assert!(members.list().is_empty());
    }

    #[test]
    fn nodes_join_once_and_the_list_is_bounded() {
        let members = Members::default();
        assert_eq!(members.admit("node-a"), Admission::Joined);
        assert_eq!(members.admit("node-a"), Admission::Known);
        for i in 1..MAX_MEMBERS {
            assert_eq!(members.admit(&format!("n{i}")), Admission::Joined);
        }
        assert_eq!(members.admit("one-too-many"), Admission::Full);
        assert_eq!(members.list().len(), MAX_MEMBERS);
        // A goodbye makes room again.
        assert!(members.remove("node-a"));
        assert_eq!(members.admit("one-too-many"), Admission::Joined);
    }
}
