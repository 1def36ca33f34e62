//! Subscription keys to resources, looked up through the [`CheckCache`] every service checks
//! requests with.
//!
//! The presented key is digested with the store's pepper, looked up by digest, and the match
//! is confirmed with `ring::hmac::verify`, which compares in constant time. The key itself is
//! never kept, logged or compared with `==`.

use std::sync::Arc;

use crate::check_cache::CheckCache;
use crate::{Resource, StoreError};
use latch_core::audit::KeySlot;
use latch_core::secret::Pepper;

/// Finds the resource a key belongs to.
#[derive(Clone)]
pub struct KeyAuth {
    checks: CheckCache,
    pepper: Arc<Pepper>,
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuth").finish_non_exhaustive()
    }
}

impl KeyAuth {
    /// Reads the pepper from the store under `checks`, and looks keys up through it.
    pub async fn new(checks: CheckCache) -> Result<Self, StoreError> {
        let pepper = Arc::new(Pepper::from_bytes(&checks.store().key_pepper().await?));
        Ok(KeyAuth { checks, pepper })
    }

    /// The resource, and the key slot, of `presented`; `None` for a key of no resource.
    pub async fn resource_for_key(
        &self,
        presented: &[u8],
    ) -> Result<Option<(Arc<Resource>, KeySlot)>, StoreError> {
        let found = self
            .checks
            .resource_by_key(&self.pepper.digest(presented))
            .await?;
        Ok(found.and_then(|(resource, slot, stored)| {
            self.pepper
                .matches(presented, &stored)
                .then_some((resource, slot))
        }))
    }
}
