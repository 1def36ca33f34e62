//! Signed checkpoints and exports of the audit log.
//!
//! The audit key is an ES256 key of its own, made on first use and never used for tokens.
//! [`checkpoint`] signs the RFC 9162 root of a chain as it stands; the service does so every
//! N records or T seconds, also when nothing happened, so that silence is provable. [`export`]
//! writes whole chains as JSON lines (each record's body exactly as sealed), then their
//! checkpoints, then a fresh one: what `latch audit verify` checks offline.

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::checkpoint::{Checkpoint, Frontier};
use latch_core::signing::SigningKey;
use latch_core::Clock;
use ring::rand::SecureRandom;

use crate::{Result, Store, StoreError, StoredSigningKey};

/// The audit key, made and stored on first use.
pub async fn audit_key(
    store: &dyn Store,
    rng: &(dyn SecureRandom + Sync),
    clock: &dyn Clock,
) -> Result<SigningKey> {
    if let Some(stored) = store.audit_key().await? {
        return SigningKey::from_pkcs8(&stored.pkcs8, rng)
            .map_err(|e| StoreError::Corrupt(format!("audit key: {e}")));
    }
    let key = SigningKey::generate(rng).map_err(|e| StoreError::Unavailable(e.to_string()))?;
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
        event: AuditEvent::AuditKeyCreated {
            kid: row.kid.clone(),
        },
    };
    store.add_audit_key(&row, &draft).await?;
    Ok(key)
}

/// Signs and stores a checkpoint of `chain` as it stands now.
pub async fn checkpoint(
    store: &dyn Store,
    key: &SigningKey,
    chain: &str,
    rng: &(dyn SecureRandom + Sync),
    clock: &dyn Clock,
) -> Result<Checkpoint> {
    let mut frontier = archived_frontier(store, chain).await?;
    for leaf in store.audit_leaves(chain).await? {
        frontier.push(leaf);
    }
    let cp = Checkpoint::sign(
        key,
        chain,
        frontier.size(),
        &frontier.root(),
        clock.now(),
        rng,
    )
    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    store.add_checkpoint(&cp).await?;
    Ok(cp)
}

/// Where export lines go.
#[async_trait::async_trait]
pub trait LineSink: Send {
    /// Takes one line (without its newline).
    async fn line(&mut self, line: String) -> std::io::Result<()>;

    /// Makes every line taken so far durable.
    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl LineSink for Vec<String> {
    async fn line(&mut self, line: String) -> std::io::Result<()> {
        self.push(line);
        Ok(())
    }
}

/// The Merkle frontier of a chain's archived records (empty if none were archived).
async fn archived_frontier(store: &dyn Store, chain: &str) -> Result<Frontier> {
    match store.audit_archive(chain).await? {
        None => Ok(Frontier::default()),
        Some((through, bytes)) => Frontier::from_bytes(&bytes)
            .filter(|f| f.size() == through)
            .ok_or_else(|| StoreError::Corrupt(format!("the archived frontier of chain {chain}"))),
    }
}

/// What to archive: the records of `chain` older than `before`, on behalf of `actor`.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    /// The chain.
    pub chain: &'a str,
    /// Records older than this.
    pub before: latch_core::UnixTime,
    /// Who archives.
    pub actor: Actor,
}

/// Moves the records of `chain` older than `before` (the longest such prefix, never the
/// chain's last record) to `out`, with a signed checkpoint at their end, and removes them
/// from the store. The archive verifies with the archives before it; every later export still
/// verifies when checked together with the archives. Returns the archive's checkpoint, if
/// anything was old enough.
pub async fn archive(
    store: &dyn Store,
    key: &SigningKey,
    what: &Archive<'_>,
    rng: &(dyn SecureRandom + Sync),
    clock: &dyn Clock,
    out: &mut dyn LineSink,
) -> Result<Option<Checkpoint>> {
    let Archive {
        chain,
        before,
        actor,
    } = what;
    let (chain, before) = (*chain, *before);
    let io = |e: std::io::Error| StoreError::Unavailable(format!("writing the archive: {e}"));
    let head = store.audit_head(chain).await?;
    let mut frontier = archived_frontier(store, chain).await?;
    let mut after = frontier.size();
    let mut lines = Vec::new();
    'pages: while after + 1 < head {
        let page = store.audit_records(chain, after, 1000).await?;
        if page.is_empty() {
            break;
        }
        for r in page {
            let time = serde_json::from_str::<latch_core::audit::SealedRecord>(&r.body)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .time;
            if time >= before || r.seq >= head {
                break 'pages;
            }
            frontier.push(latch_core::merkle::leaf_hash(r.body.as_bytes()));
            after = r.seq;
            lines.push(r.body);
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let cp = Checkpoint::sign(
        key,
        chain,
        frontier.size(),
        &frontier.root(),
        clock.now(),
        rng,
    )
    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    for line in lines {
        out.line(line).await.map_err(io)?;
    }
    out.line(cp.to_line()).await.map_err(io)?;
    // The archive is durable before its records leave the store.
    out.flush().await.map_err(io)?;
    store.add_checkpoint(&cp).await?;
    let draft = AuditDraft {
        time: clock.now(),
        request_id: None,
        actor: actor.clone(),
        event: AuditEvent::AuditArchived {
            chain: chain.to_owned(),
            through_seq: cp.size,
            root: cp.root.clone(),
        },
    };
    store
        .archive_audit(chain, cp.size, &frontier.to_bytes(), &draft)
        .await?;
    Ok(Some(cp))
}

/// Writes every chain (or one) as export lines to `out`: records in order, the chain's
/// checkpoints, and a fresh checkpoint covering everything. Pages through the store, so memory
/// stays flat.
pub async fn export(
    store: &dyn Store,
    key: &SigningKey,
    only: Option<&str>,
    rng: &(dyn SecureRandom + Sync),
    clock: &dyn Clock,
    out: &mut dyn LineSink,
) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Unavailable(format!("writing the export: {e}"));
    let chains: Vec<String> = match only {
        Some(c) => vec![c.to_owned()],
        None => store.audit_chains().await?,
    };
    for chain in chains {
        let fresh = checkpoint(store, key, &chain, rng, clock).await?;
        let mut after = 0;
        while after < fresh.size {
            let page = store.audit_records(&chain, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in page.into_iter().take_while(|r| r.seq <= fresh.size) {
                out.line(r.body).await.map_err(io)?;
            }
        }
        for cp in store.checkpoints(&chain).await? {
            if cp != fresh {
                out.line(cp.to_line()).await.map_err(io)?;
            }
        }
        out.line(fresh.to_line()).await.map_err(io)?;
    }
    Ok(())
}

/// Keeps a writer's checkpoints coming: every `every_records` records, or every `every_secs`
/// seconds even when idle.
#[derive(Debug)]
pub struct CheckpointPolicy {
    /// Records between checkpoints.
    pub every_records: u64,
    /// Seconds between checkpoints.
    pub every_secs: i64,
    last: Option<(u64, i64)>,
}

impl CheckpointPolicy {
    /// A policy.
    pub fn new(every_records: u64, every_secs: i64) -> Self {
        CheckpointPolicy {
            every_records: every_records.max(1),
            every_secs: every_secs.max(1),
            last: None,
        }
    }

    /// Makes a checkpoint of `chain` if one is due; returns it.
    pub async fn tick(
        &mut self,
        store: &dyn Store,
        key: &SigningKey,
        chain: &str,
        rng: &(dyn SecureRandom + Sync),
        clock: &dyn Clock,
    ) -> Result<Option<Checkpoint>> {
        let head = store.audit_head(chain).await?;
        let now = clock.now().0;
        let due = match self.last {
            None => true,
            Some((size, time)) => {
                head >= size + self.every_records || now >= time + self.every_secs
            }
        };
        if !due {
            return Ok(None);
        }
        let cp = checkpoint(store, key, chain, rng, clock).await?;
        self.last = Some((cp.size, cp.time.0));
        Ok(Some(cp))
    }
}
