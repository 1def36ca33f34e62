//! Administrative operations: the one place where resources, keys, grants, approvals and blocks
//! change. The command line calls these on the local store; an admin API calls the same.
//!
//! Each operation makes its secrets (new keys) here, stores only their digests, and commits the
//! change together with its audit record. The plaintext keys are returned once, to be shown once.

use std::sync::Arc;

use latch_core::audit::{Actor, AuditDraft, AuditEvent, KeySlot};
use latch_core::secret::{Pepper, SubscriptionKey};
use latch_core::{Clock, FeatureSet, ResourceId};
use ring::rand::SecureRandom;

use crate::{AuthMode, KeyInfo, Resource, Result, Revocation, Store, StoreError};

/// The two keys of a new resource, in plaintext.
#[derive(Debug)]
pub struct NewKeys {
    /// `Key1`.
    pub key1: SubscriptionKey,
    /// `Key2`.
    pub key2: SubscriptionKey,
}

/// Administrative operations over a store, on behalf of one actor.
pub struct Admin {
    store: Arc<dyn Store>,
    rng: Arc<dyn SecureRandom + Send + Sync>,
    clock: Arc<dyn Clock>,
    actor: Actor,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Operations by `actor`.
    pub fn new(
        store: Arc<dyn Store>,
        rng: Arc<dyn SecureRandom + Send + Sync>,
        clock: Arc<dyn Clock>,
        actor: Actor,
    ) -> Self {
        Admin {
            store,
            rng,
            clock,
            actor,
        }
    }

    fn draft(&self, event: AuditEvent) -> AuditDraft {
        AuditDraft {
            time: self.clock.now(),
            request_id: None,
            actor: self.actor.clone(),
            event,
        }
    }

    fn new_key(&self) -> Result<SubscriptionKey> {
        SubscriptionKey::generate(self.rng.as_ref())
            .map_err(|_| StoreError::Internal("random number generator failed".into()))
    }

    async fn pepper(&self) -> Result<Pepper> {
        Ok(Pepper::from_bytes(&self.store.key_pepper().await?))
    }

    /// Creates a resource with two fresh keys.
    pub async fn create_resource(&self, id: &ResourceId) -> Result<(Resource, NewKeys)> {
        let keys = NewKeys {
            key1: self.new_key()?,
            key2: self.new_key()?,
        };
        let pepper = self.pepper().await?;
        let resource = Resource {
            id: id.clone(),
            created_at: self.clock.now(),
            isv_enabled: false,
            isv_grants: FeatureSet::new(),
            approvals: FeatureSet::new(),
            auth_mode: AuthMode::Key,
        };
        self.store
            .create_resource(
                &resource,
                &pepper.digest(keys.key1.expose_secret().as_bytes()),
                &pepper.digest(keys.key2.expose_secret().as_bytes()),
                &self.draft(AuditEvent::ResourceCreated {
                    resource: id.clone(),
                }),
            )
            .await?;
        Ok((resource, keys))
    }

    /// Replaces one key with a fresh one; the old value stops working when this returns.
    pub async fn regenerate_key(&self, id: &ResourceId, slot: KeySlot) -> Result<SubscriptionKey> {
        let key = self.new_key()?;
        let digest = self.pepper().await?.digest(key.expose_secret().as_bytes());
        let event = AuditEvent::KeyRegenerated {
            resource: id.clone(),
            slot,
        };
        self.store
            .replace_key(id, slot, &digest, self.clock.now(), &self.draft(event))
            .await?;
        Ok(key)
    }

    /// The key slots of a resource, without the keys.
    pub async fn keys(&self, id: &ResourceId) -> Result<Vec<KeyInfo>> {
        self.store.keys(id).await
    }

    /// Enables or disables ISV issuance and sets what the ISV may grant.
    pub async fn set_isv(
        &self,
        id: &ResourceId,
        enabled: bool,
        grants: &FeatureSet,
    ) -> Result<Resource> {
        let event = AuditEvent::IsvIssuanceChanged {
            resource: id.clone(),
            enabled,
            grants: grants.clone(),
        };
        self.store
            .set_isv(id, enabled, grants, &self.draft(event))
            .await
    }

    /// Sets the features approved for a resource directly.
    pub async fn set_approvals(&self, id: &ResourceId, features: &FeatureSet) -> Result<Resource> {
        let event = AuditEvent::ApprovalsChanged {
            resource: id.clone(),
            features: features.clone(),
        };
        self.store
            .set_approvals(id, features, &self.draft(event))
            .await
    }

    /// Sets how the resource's Face endpoint authenticates callers: keys or `issueToken` tokens.
    pub async fn set_auth_mode(&self, id: &ResourceId, mode: AuthMode) -> Result<Resource> {
        let event = AuditEvent::AuthModeChanged {
            resource: id.clone(),
            mode: mode.as_str().to_owned(),
        };
        self.store.set_auth_mode(id, mode, &self.draft(event)).await
    }

    /// Rotates the signing key: a new key signs from now on; the old one stays published
    /// until its tokens have expired. Returns the new key's id.
    pub async fn rotate_signing_key(&self) -> Result<String> {
        let key = latch_core::SigningKey::generate(self.rng.as_ref())
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let retired: Vec<String> = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.kid)
            .collect();
        let now = self.clock.now();
        let row = crate::StoredSigningKey {
            kid: key.kid().to_owned(),
            pkcs8: zeroize::Zeroizing::new(key.pkcs8().to_vec()),
            created_at: now,
            retired_at: None,
        };
        let event = AuditEvent::SigningKeyRotated {
            kid: row.kid.clone(),
            retired,
        };
        self.store
            .rotate_signing_key(&row, now, &self.draft(event))
            .await?;
        Ok(row.kid)
    }

    /// Sets an admin credential to a fresh random value, stored as a digest; returns the value
    /// to show once.
    pub async fn reset_admin_credential(&self, role: crate::AdminRole) -> Result<SubscriptionKey> {
        let secret = self.new_key()?;
        let digest = self
            .pepper()
            .await?
            .digest(secret.expose_secret().as_bytes());
        let event = AuditEvent::AdminCredentialSet {
            role: role.as_str().to_owned(),
        };
        self.store
            .set_admin_credential(role, &digest, &self.draft(event))
            .await?;
        Ok(secret)
    }

    /// Disables an ISV and revokes every token it issued until now, so that tokens already
    /// handed out stop working too.
    pub async fn disable_isv(&self, id: &ResourceId) -> Result<Resource> {
        let current = self
            .store
            .resource(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("resource {id}")))?;
        let resource = self.set_isv(id, false, &current.isv_grants).await?;
        self.revoke(&Revocation::IsvBefore {
            isv: id.clone(),
            before: self.clock.now().plus(1),
        })
        .await?;
        Ok(resource)
    }

    /// Revokes issued limited access tokens.
    pub async fn revoke(&self, revocation: &Revocation) -> Result<()> {
        let event = match revocation {
            Revocation::Token { jti, .. } => AuditEvent::TokensRevoked {
                scope: "jti".into(),
                subject: jti.clone(),
                before: None,
            },
            Revocation::TargetBefore { target, before } => AuditEvent::TokensRevoked {
                scope: "target".into(),
                subject: target.canonical().to_owned(),
                before: Some(*before),
            },
            Revocation::IsvBefore { isv, before } => AuditEvent::TokensRevoked {
                scope: "isv".into(),
                subject: isv.canonical().to_owned(),
                before: Some(*before),
            },
            Revocation::IsvTargetBefore {
                isv,
                target,
                before,
            } => AuditEvent::TokensRevoked {
                scope: "isv_target".into(),
                subject: format!("{} {}", isv.canonical(), target.canonical()),
                before: Some(*before),
            },
        };
        self.store
            .add_revocation(revocation, &self.draft(event))
            .await
    }

    /// Stops (`true`) or resumes issuance by `isv` for `client`.
    pub async fn set_client_blocked(
        &self,
        isv: &ResourceId,
        client: &ResourceId,
        blocked: bool,
    ) -> Result<()> {
        let event = if blocked {
            AuditEvent::ClientBlocked {
                isv: isv.clone(),
                client: client.clone(),
            }
        } else {
            AuditEvent::ClientUnblocked {
                isv: isv.clone(),
                client: client.clone(),
            }
        };
        self.store
            .set_client_blocked(isv, client, blocked, self.clock.now(), &self.draft(event))
            .await
    }
}
