//! Every second: the signing keys reloaded, a checkpoint signed when due; every minute, expired
//! revocations dropped.

use std::sync::Arc;

use latch_core::{Clock, Verifier};
use latch_face::Verifiers;
use latch_store::signing::{KeyRing, SharedKeyRing};
use latch_store::Store;
use ring::rand::SecureRandom;

/// What the maintenance task keeps up to date.
pub(super) struct Maintenance {
    pub(super) audit: Arc<latch_audit::signer::AuditSigner>,
    pub(super) chain: String,
    pub(super) checkpoints: latch_audit::signer::CheckpointPolicy,
    pub(super) store: Arc<dyn Store>,
    pub(super) rng: Arc<dyn SecureRandom + Send + Sync>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) ring: SharedKeyRing,
    pub(super) verifiers: Verifiers,
    pub(super) issuer: String,
    pub(super) leeway_secs: i64,
}

/// Every second: reload the signing keys from the store, so a rotation made anywhere (the
/// admin API, the command line, another replica) is in force here within a second, and a
/// retired key leaves the JWKS and the verifiers once its tokens have expired; and sign a
/// checkpoint of this process's audit chain when one is due (every N records or T seconds,
/// also when idle). Every minute: drop revocations that no longer cover a valid token.
pub(super) async fn maintain(
    mut m: Maintenance,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            _ = tick.tick() => {}
        }
        ticks += 1;
        match KeyRing::load(m.store.as_ref(), m.rng.as_ref(), m.clock.now()).await {
            Ok(ring) => {
                if ring.active().kid() != m.ring.current().active().kid()
                    || ring.public_keys() != m.ring.current().public_keys()
                {
                    tracing::info!(target: "latch::keys", kid = ring.active().kid(), published = ring.public_keys().len(), "signing keys changed");
                }
                // A new verifier only when the keys changed: it would start with an empty
                // memory of verified tokens.
                if m.verifiers.current().keys() != ring.public_keys() {
                    m.verifiers.replace(Verifier::new(
                        m.issuer.clone(),
                        ring.public_keys().to_vec(),
                        m.leeway_secs,
                    ));
                }
                m.ring.replace(ring);
            }
            Err(e) => {
                tracing::warn!(target: "latch::keys", error = %e, "cannot reload the signing keys; keeping the ones in force")
            }
        }
        match m
            .checkpoints
            .tick(
                m.store.as_ref(),
                &m.audit,
                &m.chain,
                m.rng.as_ref(),
                m.clock.as_ref(),
            )
            .await
        {
            Ok(Some(cp)) => {
                tracing::debug!(target: "latch::audit", size = cp.size, "checkpoint signed")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "latch::audit", error = %e, "cannot sign a checkpoint")
            }
        }
        if ticks % 60 == 0 {
            match m.store.prune_revocations(m.clock.now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "latch::revocations", dropped = n, "expired revocations dropped")
                }
                Err(e) => {
                    tracing::warn!(target: "latch::revocations", error = %e, "cannot prune revocations")
                }
            }
        }
    }
}
