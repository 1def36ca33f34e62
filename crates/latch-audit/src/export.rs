//! Archives and exports of the audit log.
//!
//! [`export`] writes whole chains as JSON lines (each record's body exactly as sealed), then
//! their checkpoints, then a fresh one: what `latch audit verify` checks offline. [`archive`]
//! moves a chain's oldest records out of the store into such a file, keeping the Merkle
//! frontier they leave behind.

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::checkpoint::{Checkpoint, Frontier};
use latch_core::Clock;
use ring::rand::SecureRandom;

use crate::signer::{archived_frontier, checkpoint, AuditSigner, HeadCheck};
use crate::{AuditError, AuditStore, Result};

/// Records read from the store at once by an export or an archive: a few megabytes. A page read
/// from the middle of a journal segment first passes over the batches before it by their heads,
/// so fewer, larger pages make a long export cheaper.
const PAGE: usize = 16_384;

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
    store: &dyn AuditStore,
    signer: &AuditSigner,
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
    let io = |e: std::io::Error| AuditError::Unavailable(format!("writing the archive: {e}"));
    let head = store.audit_head(chain).await?;
    let mut check = HeadCheck::new(signer, chain)?;
    let mut frontier = archived_frontier(store, chain).await?;
    let archived = frontier.size();
    check.see(&frontier);
    let lines = records_before(store, chain, before, head, &mut frontier, &mut check).await?;
    if lines.is_empty() {
        return Ok(None);
    }
    // Only what extends the signed head may be signed; a head beyond this prefix is checked
    // by the next full checkpoint.
    let cp = if check
        .head
        .as_ref()
        .is_some_and(|h| h.size > frontier.size())
    {
        signer.sign_unchecked(chain, &frontier, rng, clock)?
    } else {
        signer.sign(chain, &frontier, &check, archived, rng, clock)?
    };
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
        .archive_audit(chain, archived, cp.size, &frontier.to_bytes(), &draft)
        .await?;
    Ok(Some(cp))
}

/// The records of `chain` after those `frontier` holds that are older than `before` (the
/// longest such prefix, never the record at `head`), each pushed onto `frontier` and seen by
/// `check`.
async fn records_before(
    store: &dyn AuditStore,
    chain: &str,
    before: latch_core::UnixTime,
    head: u64,
    frontier: &mut Frontier,
    check: &mut HeadCheck,
) -> Result<Vec<String>> {
    let mut after = frontier.size();
    let mut lines = Vec::new();
    'pages: while after + 1 < head {
        let page = store.audit_records(chain, after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for r in page {
            let time = serde_json::from_str::<latch_core::audit::SealedRecord>(&r.body)
                .map_err(|e| AuditError::Corrupt(e.to_string()))?
                .time;
            if time >= before || r.seq >= head {
                break 'pages;
            }
            frontier.push(latch_core::merkle::leaf_hash(r.body.as_bytes()));
            check.see(frontier);
            after = r.seq;
            lines.push(r.body);
        }
    }
    Ok(lines)
}

/// Writes every chain (or one) as export lines to `out`: records in order, the chain's
/// checkpoints, and a fresh checkpoint covering everything. Pages through the store, so memory
/// stays flat.
pub async fn export(
    store: &dyn AuditStore,
    signer: &AuditSigner,
    only: Option<&str>,
    rng: &(dyn SecureRandom + Sync),
    clock: &dyn Clock,
    out: &mut dyn LineSink,
) -> Result<()> {
    let io = |e: std::io::Error| AuditError::Unavailable(format!("writing the export: {e}"));
    let chains: Vec<String> = match only {
        Some(c) => vec![c.to_owned()],
        None => store.audit_chains().await?,
    };
    for chain in chains {
        let fresh = checkpoint(store, signer, &chain, rng, clock).await?;
        let mut after = 0;
        while after < fresh.size {
            let page = store.audit_records(&chain, after, PAGE).await?;
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
