//! How both backends read back the values they store: each value's rule, and the error
//! ([`StoreError::Corrupt`]) a stored value that breaks it makes.

use latch_core::audit::KeySlot;
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId};

use crate::{AuthMode, Result, StoreError};

/// A resource id, stored as first spelled.
pub(crate) fn resource_id(display: &str) -> Result<ResourceId> {
    ResourceId::parse(display).map_err(|e| StoreError::Corrupt(format!("stored resource id: {e}")))
}

/// A feature set, stored as comma-separated names.
pub(crate) fn features(csv: &str) -> Result<FeatureSet> {
    FeatureSet::parse_csv(csv).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// An auth mode, stored as `key` or `token`.
pub(crate) fn auth_mode(name: &str) -> Result<AuthMode> {
    AuthMode::parse(name).ok_or_else(|| StoreError::Corrupt("stored auth mode".into()))
}

/// A key slot, stored as its number.
pub(crate) fn key_slot(number: impl TryInto<u8>) -> Result<KeySlot> {
    number
        .try_into()
        .ok()
        .and_then(KeySlot::from_number)
        .ok_or_else(|| StoreError::Corrupt("key slot".into()))
}

/// A key digest of a resource's key (`what` is `key`) or of an admin credential
/// (`credential`): 32 bytes.
pub(crate) fn digest(bytes: Vec<u8>, what: &str) -> Result<KeyDigest> {
    bytes
        .try_into()
        .map(KeyDigest)
        .map_err(|_| StoreError::Corrupt(format!("{what} digest is not 32 bytes")))
}
