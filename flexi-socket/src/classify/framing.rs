//! Where classification and framing meet: the raw first unit a classifier
//! may look at before any framing, and the framing of each client type.

use crate::classify::ErasedClassifier;
use crate::client_type::ClientType;
use crate::config::Limits;
use crate::error::Error;
use crate::framing::Framing;

/// The raw bytes a classifier sees when it classifies before any framing
/// (see [`ServerBuilder::classify_raw`](crate::ServerBuilder::classify_raw)).
///
/// The unit ends at the first end byte (included), or after
/// [`max_length`](Self::max_length) bytes, or where the peer closed, or (with
/// [`Framing::idle_gap`] as the server's framing) at a gap of silence: a
/// classifier always gets an answer within a bounded number of bytes, and
/// the first-message timeout bounds the wait.
///
/// ```
/// use flexi_socket::FirstUnit;
///
/// // Up to CR or DC4, at most 64 bytes: alarm panels of two kinds.
/// let unit = FirstUnit::until_any(b"\r\x14").max_length(64);
/// // The first 3 bytes: enough to tell a TLS hello (0x16 0x03) from "GET".
/// let peek = FirstUnit::first_bytes(3);
/// # let _ = (unit, peek);
/// ```
#[derive(Clone, Debug)]
pub struct FirstUnit {
    end_bytes: Vec<u8>,
    max_length: usize,
}

impl FirstUnit {
    /// Default [`max_length`](Self::max_length): a first unit is for telling
    /// clients apart, not for carrying data.
    pub const DEFAULT_MAX_LENGTH: usize = 256;

    /// The bytes up to and including the first of `end_bytes`; at most
    /// [`DEFAULT_MAX_LENGTH`](Self::DEFAULT_MAX_LENGTH) bytes unless
    /// [`max_length`](Self::max_length) says otherwise.
    pub fn until_any(end_bytes: impl AsRef<[u8]>) -> Self {
        Self {
            end_bytes: end_bytes.as_ref().to_vec(),
            max_length: Self::DEFAULT_MAX_LENGTH,
        }
    }

    /// Exactly the first `len` bytes (fewer if the peer closes sooner).
    ///
    /// # Panics
    ///
    /// If `len` is 0.
    pub fn first_bytes(len: usize) -> Self {
        Self::until_any([]).max_length(len)
    }

    /// The most bytes the unit may have; a unit without an end byte by then
    /// is cut there.
    ///
    /// # Panics
    ///
    /// If `max` is 0: the classifier would never see a byte.
    #[must_use]
    pub fn max_length(mut self, max: usize) -> Self {
        assert!(max > 0, "FirstUnit::max_length must be at least 1 byte");
        self.max_length = max;
        self
    }

    /// The unit at the start of `buffer`, once it is complete; `at_end` says
    /// no more bytes will come. An empty buffer has no unit.
    pub(crate) fn cut<'a>(&self, buffer: &'a [u8], at_end: bool) -> Option<&'a [u8]> {
        let window = &buffer[..buffer.len().min(self.max_length)];
        if let Some(end) = window.iter().position(|b| self.end_bytes.contains(b)) {
            return Some(&window[..=end]);
        }
        (window.len() == self.max_length || (at_end && !window.is_empty())).then_some(window)
    }
}

/// The per-client-type side of a server's framing.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientFraming {
    /// Classify on the raw first unit instead of the first frame.
    pub(crate) first_unit: Option<FirstUnit>,
    by_type: Vec<(ClientType, Framing)>,
}

impl ClientFraming {
    /// Gives `client_type` its own framing, replacing an earlier one.
    pub(crate) fn set(&mut self, client_type: ClientType, framing: Framing) {
        self.by_type.retain(|(known, _)| *known != client_type);
        self.by_type.push((client_type, framing));
    }

    /// The framing of `client_type`, if it has its own.
    pub(crate) fn for_type(&self, client_type: &ClientType) -> Option<&Framing> {
        self.by_type
            .iter()
            .find_map(|(known, framing)| (known == client_type).then_some(framing))
    }

    /// Whether a connection's framing may change once it is classified.
    pub(crate) fn switches(&self) -> bool {
        !self.by_type.is_empty()
    }

    /// Start-up check: both features need a classifier, and a framing for a
    /// client type the classifier never produces is a typo waiting to bite.
    pub(crate) fn check(
        &self,
        classifier: Option<&ErasedClassifier>,
        limits: &Limits,
    ) -> Result<(), Error> {
        let cap = limits.first_message_max_length;
        if let Some(unit) = self
            .first_unit
            .as_ref()
            .filter(|unit| unit.max_length > cap)
        {
            return Err(Error::FirstUnitOverCap {
                unit: unit.max_length,
                cap,
            });
        }
        let needs = if self.first_unit.is_some() {
            Some("classify_raw")
        } else {
            self.by_type.first().map(|_| "framing_for")
        };
        let Some(classifier) = classifier else {
            return needs.map_or(Ok(()), |method| Err(Error::NoClassifierFor { method }));
        };
        for (client_type, _) in &self.by_type {
            if let Some(known) = classifier.never_produces(client_type) {
                return Err(Error::UnknownFramingClientType {
                    client_type: client_type.clone(),
                    known,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_ends_at_the_first_end_byte_included() {
        let unit = FirstUnit::until_any(b"\r\x14").max_length(8);
        assert_eq!(unit.cut(b"12\x1434\r", false), Some(&b"12\x14"[..]));
        assert_eq!(unit.cut(b"\rrest", false), Some(&b"\r"[..]));
    }

    #[test]
    fn a_unit_without_an_end_byte_waits_until_its_limit_or_the_end() {
        let unit = FirstUnit::until_any(b"\r").max_length(4);
        assert_eq!(unit.cut(b"abc", false), None);
        assert_eq!(unit.cut(b"abcd", false), Some(&b"abcd"[..]));
        assert_eq!(unit.cut(b"abcdef\r", false), Some(&b"abcd"[..]));
        assert_eq!(unit.cut(b"ab", true), Some(&b"ab"[..]));
        assert_eq!(unit.cut(b"", true), None);
    }

    #[test]
    fn first_bytes_is_a_plain_prefix() {
        let unit = FirstUnit::first_bytes(2);
        assert_eq!(unit.cut(b"\x16\x03\x01", false), Some(&b"\x16\x03"[..]));
        assert_eq!(unit.cut(b"G", false), None);
    }

    #[test]
    fn an_end_byte_past_the_limit_does_not_count() {
        let unit = FirstUnit::until_any(b"\r").max_length(2);
        assert_eq!(unit.cut(b"ab\r", false), Some(&b"ab"[..]));
    }

    #[test]
    fn a_later_framing_for_the_same_client_type_replaces_the_first() {
        let mut framing = ClientFraming::default();
        framing.set("a".into(), Framing::lines());
        framing.set("a".into(), Framing::raw());
        assert_eq!(
            format!("{:?}", framing.for_type(&"a".into()).unwrap()),
            format!("{:?}", Framing::raw())
        );
        assert!(framing.for_type(&"b".into()).is_none());
    }
}
