//! Client classification: the first inbound frame (or the raw first unit,
//! [`framing`]) decides a connection's client type, and the client type may
//! bring its own framing.

use std::fmt;

mod framing;

pub(crate) use framing::ClientFraming;
pub use framing::FirstUnit;

use crate::client_type::{Classifier, ClientType};

/// A classifier chosen on the builder, with its type erased.
#[derive(Clone)]
pub(crate) struct ErasedClassifier {
    classify: fn(&[u8]) -> ClientType,
    classify_early: fn(&[u8]) -> Option<ClientType>,
    pub(crate) client_types: Option<Vec<ClientType>>,
    pub(crate) name: &'static str,
}

impl ErasedClassifier {
    pub(crate) fn of<C: Classifier>() -> Self {
        Self {
            classify: |frame| C::classify(frame).client_type(),
            classify_early: |first_bytes| C::classify_early(first_bytes).map(|c| c.client_type()),
            client_types: C::client_types(),
            name: std::any::type_name::<C>(),
        }
    }

    pub(crate) fn classify(&self, first_frame: &[u8]) -> ClientType {
        (self.classify)(first_frame)
    }

    /// The client type `first_bytes` of an unfinished first frame already
    /// settle, if they do (see [`Classifier::classify_early`]).
    pub(crate) fn classify_early(&self, first_bytes: &[u8]) -> Option<ClientType> {
        (self.classify_early)(first_bytes)
    }

    /// If this classifier can never produce `client_type`, the client types
    /// it can produce, comma separated, for the start-up error that says so.
    pub(crate) fn never_produces(&self, client_type: &ClientType) -> Option<String> {
        let known = self.client_types.as_ref()?;
        (!known.contains(client_type)).then(|| {
            known
                .iter()
                .map(ClientType::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

impl fmt::Debug for ErasedClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("type", &self.name)
            .finish()
    }
}
