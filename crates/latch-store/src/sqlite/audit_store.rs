//! The embedded store as the audit log's storage: each chain a journal
//! ([`super::audit_journal`]), indexed behind it ([`super::audit_index`]).

use async_trait::async_trait;
use latch_audit::{AuditQuery, AuditStore, Result as AuditResult, StoredAuditRecord};
use latch_core::audit::AuditDraft;
use rusqlite::{params, OptionalExtension};

use super::connection::blocking;
use super::{audit_index, audit_journal, corrupt, sql, unavailable, SqliteStore};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> AuditResult<Vec<u64>> {
        if chain != self.inner.chain {
            return Err(unavailable(&format!(
                "this store writes audit chain {}, not {chain}",
                self.inner.chain
            ))
            .into());
        }
        Ok(self.journal(drafts.to_vec()).await?)
    }

    async fn record(&self, audit: &AuditDraft) -> AuditResult<u64> {
        let seqs = self.journal(vec![audit.clone()]).await?;
        Ok(seqs
            .first()
            .copied()
            .ok_or_else(|| unavailable("no record appended"))?)
    }

    async fn audit_records(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> AuditResult<Vec<StoredAuditRecord>> {
        let chain_name = chain.to_owned();
        Ok(self
            .past_archive(chain, move |dir, archived| {
                audit_journal::records(dir, &chain_name, after.max(archived), limit)
            })
            .await?)
    }

    async fn audit_chains(&self) -> AuditResult<Vec<String>> {
        let inner = self.inner.clone();
        Ok(blocking(move || inner.audit.chains()).await?)
    }

    async fn archive_audit(
        &self,
        chain: &str,
        previous: u64,
        through: u64,
        frontier: &[u8],
        audit: &AuditDraft,
    ) -> AuditResult<()> {
        let (chain, frontier) = (chain.to_owned(), frontier.to_vec());
        let journal = audit_journal::journal_of(self.inner.audit.root(), &chain)?;
        self.change(audit, move |tx| {
            let current: Option<i64> = tx
                .query_row("SELECT through_seq FROM audit_archives WHERE chain = ?1", [&chain], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            if current.unwrap_or(0) as u64 != previous {
                return Err(unavailable("another archiving of this chain ran meanwhile; nothing was removed"));
            }
            audit_index::remove_through(
                tx,
                &mut audit_index::Names::default(),
                &chain,
                through,
            )?;
            tx.execute(
                "INSERT INTO audit_archives (chain, through_seq, frontier) VALUES (?1, ?2, ?3)
                 ON CONFLICT (chain) DO UPDATE SET through_seq = excluded.through_seq, frontier = excluded.frontier",
                params![chain, through as i64, frontier],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await?;
        // The archived records leave the journal too, a whole segment at a time.
        if let Some(dir) = journal {
            blocking(move || {
                latch_audit::journal::remove_through(&dir, through)
                    .map_err(audit_journal::journal_error)
            })
            .await?;
        }
        Ok(())
    }

    async fn audit_archive(&self, chain: &str) -> AuditResult<Option<(u64, Vec<u8>)>> {
        self.indexed().await?;
        let chain = chain.to_owned();
        Ok(self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT through_seq, frontier FROM audit_archives WHERE chain = ?1",
                )
                .map_err(sql)?
                .query_row([chain], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()
                .map_err(sql)
            })
            .await?)
    }

    async fn audit_head(&self, chain: &str) -> AuditResult<u64> {
        if chain == self.inner.chain {
            let inner = self.inner.clone();
            return Ok(blocking(move || inner.audit.durable().map(|(size, _)| size)).await?);
        }
        let Some(dir) = audit_journal::journal_of(self.inner.audit.root(), chain)? else {
            return Ok(0);
        };
        Ok(blocking(move || {
            latch_audit::journal::read(&dir, u64::MAX / 2, None, |_, _| Ok(()))
                .map_err(audit_journal::journal_error)
        })
        .await?)
    }

    async fn audit_leaves(&self, chain: &str) -> AuditResult<Vec<[u8; 32]>> {
        Ok(self
            .past_archive(chain, |dir, archived| {
                let mut leaves = Vec::new();
                latch_audit::journal::read(dir, archived, None, |_, body| {
                    leaves.push(latch_core::merkle::leaf_hash(body.as_bytes()));
                    Ok(())
                })
                .map_err(audit_journal::journal_error)?;
                Ok(leaves)
            })
            .await?)
    }

    async fn index_audit(&self) -> AuditResult<()> {
        Ok(self.indexed().await?)
    }

    async fn audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        from: u64,
        to: u64,
    ) -> AuditResult<Vec<(u64, [u8; 32])>> {
        let chain = chain.to_owned();
        Ok(self
            .read(move |c| audit_index::subtrees(c, &chain, height, from, to))
            .await?)
    }

    async fn put_audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        roots: &[(u64, [u8; 32])],
    ) -> AuditResult<()> {
        let (chain, roots) = (chain.to_owned(), roots.to_vec());
        Ok(self
            .write(move |tx| audit_index::put_subtrees(tx, &chain, height, &roots))
            .await?)
    }

    async fn reindex_audit(&self) -> AuditResult<u64> {
        let inner = self.inner.clone();
        Ok(blocking(move || inner.reindex()).await?)
    }

    async fn audit_frontier(
        &self,
        chain: &str,
    ) -> AuditResult<Option<latch_core::checkpoint::Frontier>> {
        if chain != self.inner.chain {
            return Ok(None);
        }
        self.indexed().await?;
        let inner = self.inner.clone();
        Ok(blocking(move || {
            let conn = inner
                .writer
                .lock()
                .map_err(|_| unavailable("writer lock poisoned"))?;
            inner.audit.checked_frontier(&conn).map(Some)
        })
        .await?)
    }

    async fn query_audit(
        &self,
        q: &AuditQuery,
    ) -> AuditResult<(Vec<StoredAuditRecord>, Option<i64>)> {
        self.indexed().await?;
        let q = q.clone();
        Ok(self
            .read_audit(move |inner, c| {
                audit_index::query(c, &q, &mut |chain| inner.audit.locator(chain))
            })
            .await?)
    }

    async fn issuer_of(&self, jti: &str) -> AuditResult<Option<String>> {
        self.indexed().await?;
        let jti = jti.to_owned();
        Ok(self
            .read_audit(move |inner, c| inner.audit.issuer_of(c, &jti))
            .await?)
    }

    async fn add_checkpoint(
        &self,
        checkpoint: &latch_core::checkpoint::Checkpoint,
    ) -> AuditResult<()> {
        let (chain, size, time) = (checkpoint.chain.clone(), checkpoint.size, checkpoint.time);
        let body = serde_json::to_string(checkpoint).map_err(|e| corrupt(&e.to_string()))?;
        Ok(self
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO checkpoints (chain, size, body, time) VALUES (?1, ?2, ?3, ?4)",
                    params![chain, size as i64, body, time.0],
                )
                .map_err(sql)?;
                Ok(())
            })
            .await?)
    }

    async fn checkpoints(
        &self,
        chain: &str,
    ) -> AuditResult<Vec<latch_core::checkpoint::Checkpoint>> {
        let chain = chain.to_owned();
        Ok(self
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT body FROM checkpoints WHERE chain = ?1 ORDER BY id")
                    .map_err(sql)?;
                let rows = stmt
                    .query_map([chain], |r| r.get::<_, String>(0))
                    .map_err(sql)?;
                rows.map(|r| {
                    serde_json::from_str(&r.map_err(sql)?).map_err(|e| corrupt(&e.to_string()))
                })
                .collect()
            })
            .await?)
    }
}
