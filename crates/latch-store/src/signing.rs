//! The signing key ring: the key that signs now, and the public keys verifiers trust.
//!
//! On first start the store has no signing key; [`KeyRing::load_or_create`] makes one and
//! stores it (with its audit record). Afterwards the newest unretired key signs, and every
//! stored key's public half is published, so tokens signed before a rotation still verify.

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::signing::{PublicKey, SigningKey};
use latch_core::{Clock, Jwks};
use ring::rand::SecureRandom;

use crate::{Result, Store, StoreError, StoredSigningKey};

/// The active signing key and the published public keys.
#[derive(Debug)]
pub struct KeyRing {
    active: SigningKey,
    public: Vec<PublicKey>,
}

impl KeyRing {
    /// Loads the ring from the store, creating the first key if there is none.
    pub async fn load_or_create(
        store: &dyn Store,
        rng: &dyn SecureRandom,
        clock: &dyn Clock,
    ) -> Result<Self> {
        let mut stored = store.signing_keys().await?;
        if stored.iter().all(|k| k.retired_at.is_some()) {
            let key =
                SigningKey::generate(rng).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let row = StoredSigningKey {
                kid: key.kid().to_owned(),
                pkcs8: zeroize::Zeroizing::new(key.pkcs8().to_vec()),
                created_at: clock.now(),
                retired_at: None,
            };
            let draft = AuditDraft {
                time: clock.now(),
                request_id: None,
                actor: Actor::System,
                event: AuditEvent::SigningKeyCreated {
                    kid: row.kid.clone(),
                },
            };
            store.add_signing_key(&row, &draft).await?;
            tracing::info!(target: "latch::keys", kid = %row.kid, "created a signing key");
            stored.push(row);
        }
        let mut public = Vec::with_capacity(stored.len());
        let mut active = None;
        for row in &stored {
            let key = SigningKey::from_pkcs8(&row.pkcs8, rng)
                .map_err(|e| StoreError::Corrupt(format!("signing key {}: {e}", row.kid)))?;
            if key.kid() != row.kid {
                return Err(StoreError::Corrupt(format!(
                    "signing key {} has another kid",
                    row.kid
                )));
            }
            public.push(key.public_key());
            if row.retired_at.is_none() {
                // Oldest first: the last unretired key wins.
                active = Some(key);
            }
        }
        let active = active.ok_or_else(|| StoreError::Corrupt("no active signing key".into()))?;
        Ok(KeyRing { active, public })
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The public keys verifiers trust.
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public
    }

    /// The published key set.
    pub fn jwks(&self) -> Jwks {
        Jwks::of(&self.public)
    }
}
