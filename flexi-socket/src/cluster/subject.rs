//! The NATS subjects of one cluster, all under its prefix (`flexi` unless
//! configured):
//!
//! | subject | who subscribes | what goes there |
//! |---|---|---|
//! | `<prefix>.key.<encoded key>` | the node holding the key | send, locate (requests); claims |
//! | `<prefix>.node.<node>` | that node | broadcasts (requests) |
//! | `<prefix>.presence` | every node | hello, goodbye |
//!
//! A key may hold anything (dots, `*`, `>`, spaces, any UTF-8), none of
//! which can stand in a subject token: it is written as `k` and then its
//! bytes in unpadded URL-safe base64 (`A-Z a-z 0-9 - _`), so any key,
//! the empty one too, is one token and two keys never share a subject.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The subjects of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    /// `prefix` is checked by [`valid_prefix`].
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Where requests for `key` go; the node holding it subscribes.
    pub(crate) fn key(&self, key: &str) -> String {
        format!("{}.key.k{}", self.prefix, URL_SAFE_NO_PAD.encode(key))
    }

    /// Where broadcasts for `node` go (node names are checked by [`valid_name`]).
    pub(crate) fn node(&self, node: &str) -> String {
        format!("{}.node.{node}", self.prefix)
    }

    /// Where nodes say hello and goodbye.
    pub(crate) fn presence(&self) -> String {
        format!("{}.presence", self.prefix)
    }
}

/// A node name: 1 to 64 of `A-Z a-z 0-9 - _`, so it is a subject token as
/// it is and a single word in a line protocol.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(is_word_byte)
}

/// A subject prefix: one or more names joined by dots (`flexi`, `acme.prod`).
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 128 && prefix.split('.').all(valid_name)
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_is_one_token_of_safe_bytes() {
        let subjects = Subjects::new("flexi");
        for key in ["42", "", "a.b", "*", ">", "a b\tc\r\n", "ключ ✓", "..>"] {
            let subject = subjects.key(key);
            let token = subject.strip_prefix("flexi.key.").unwrap();
            assert!(token.starts_with('k'), "{subject}");
            assert!(token.bytes().all(is_word_byte), "{key:?} -> {subject}");
            let decoded = URL_SAFE_NO_PAD.decode(&token[1..]).unwrap();
            assert_eq!(decoded, key.as_bytes());
        }
    }

    #[test]
    fn different_keys_have_different_subjects() {
        let subjects = Subjects::new("flexi");
        assert_ne!(subjects.key("a"), subjects.key("a "));
        assert_ne!(subjects.key(""), subjects.key("\0"));
    }

    #[test]
    fn names_and_prefixes() {
        assert!(valid_name("node-1_b"));
        for bad in ["", "a.b", "a b", "*", ">", "ü", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_prefix("flexi"));
        assert!(valid_prefix("acme.prod"));
        for bad in ["", "a.", ".a", "a..b", "a.*", "a.>"] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
        assert_eq!(Subjects::new("acme.prod").node("b"), "acme.prod.node.b");
        assert_eq!(Subjects::new("flexi").presence(), "flexi.presence");
    }
}
