//! The signing key ring: the key that signs now, and the public keys verifiers trust.
//!
//! On first start the store has no signing key; [`KeyRing::load_or_create`] makes one and
//! stores it (with its audit record). Afterwards the newest unretired key signs. A rotation
//! retires the signing key; a retired key stays published (in the JWKS and in the verifiers'
//! key set) for [`RETENTION_SECS`] after its retirement, the longest any token it signed can
//! still be valid, and then leaves both, so whatever it signed is refused.

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::signing::{PublicKey, SigningKey};
use latch_core::verify::MAX_LEEWAY_SECS;
use latch_core::{Clock, Jwks, Lifetime, UnixTime};
use ring::rand::SecureRandom;

use crate::{Result, Store, StoreError, StoredSigningKey};

/// How long a retired key stays published: the longest token lifetime plus the largest leeway.
pub const RETENTION_SECS: i64 = Lifetime::MAX_SECS as i64 + MAX_LEEWAY_SECS;

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
        rng: &(dyn SecureRandom + Sync),
        clock: &dyn Clock,
    ) -> Result<Self> {
        let mut stored = store.signing_keys().await?;
        if stored.iter().all(|k| k.retired_at.is_some()) {
            let key = SigningKey::generate(rng).map_err(|e| StoreError::Internal(e.to_string()))?;
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
        Self::from_stored(&stored, rng, clock.now())
    }

    /// Loads the ring as it stands at `now`; fails if no key is active.
    pub async fn load(
        store: &dyn Store,
        rng: &(dyn SecureRandom + Sync),
        now: UnixTime,
    ) -> Result<Self> {
        Self::from_stored(&store.signing_keys().await?, rng, now)
    }

    /// The ring of `stored` keys at `now`: the newest unretired key signs; keys retired less
    /// than [`RETENTION_SECS`] ago are still published.
    pub fn from_stored(
        stored: &[StoredSigningKey],
        rng: &dyn SecureRandom,
        now: UnixTime,
    ) -> Result<Self> {
        let mut public = Vec::with_capacity(stored.len());
        let mut active = None;
        for row in stored {
            let retired_long_ago = row
                .retired_at
                .is_some_and(|t| now >= t.plus(RETENTION_SECS));
            if retired_long_ago {
                continue;
            }
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

/// The key ring in force, replaceable while the service runs; cheap to clone.
pub type SharedKeyRing = latch_core::Swappable<KeyRing>;

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn row(rng: &SystemRandom, created: i64, retired: Option<i64>) -> (StoredSigningKey, String) {
        let key = SigningKey::generate(rng).unwrap();
        let kid = key.kid().to_owned();
        (
            StoredSigningKey {
                kid: kid.clone(),
                pkcs8: zeroize::Zeroizing::new(key.pkcs8().to_vec()),
                created_at: UnixTime(created),
                retired_at: retired.map(UnixTime),
            },
            kid,
        )
    }

    #[test]
    fn retired_keys_stay_published_until_their_tokens_have_expired() {
        let rng = SystemRandom::new();
        let (old, old_kid) = row(&rng, 0, Some(1_000));
        let (new, new_kid) = row(&rng, 1_000, None);
        let stored = [old, new];
        let kids = |now: i64| {
            let ring = KeyRing::from_stored(&stored, &rng, UnixTime(now)).unwrap();
            assert_eq!(ring.active().kid(), new_kid);
            ring.public_keys()
                .iter()
                .map(|k| k.kid().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(1_000), [old_kid.clone(), new_kid.clone()]);
        assert_eq!(kids(1_000 + RETENTION_SECS - 1), [old_kid, new_kid.clone()]);
        assert_eq!(kids(1_000 + RETENTION_SECS), [new_kid]);
        assert_eq!(RETENTION_SECS, 86_460);
    }

    #[test]
    fn a_ring_needs_an_active_key() {
        let rng = SystemRandom::new();
        let (old, _) = row(&rng, 0, Some(10));
        assert!(KeyRing::from_stored(&[old], &rng, UnixTime(20)).is_err());
    }
}
