//! The PostgreSQL store as the audit log's storage: each replica's chain in `audit_log`, the
//! index built behind the writers ([`super::audit_chains`]).

use async_trait::async_trait;
use latch_audit::{AuditQuery, AuditStore, Result as AuditResult, StoredAuditRecord};
use latch_core::audit::{self, AuditDraft};
use tokio_postgres::Row;

use super::connection::begin;
use super::{audit_chains, corrupt, pg, signed, unavailable, unsigned, PgStore};
use crate::Result;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> AuditResult<Vec<u64>> {
        let mut conn = self.inner.pool.get().await?;
        let tx = begin(&mut conn).await?;
        let (seqs, held) = audit_chains::append(&tx, &self.inner.audit, chain, drafts).await?;
        tx.commit().await.map_err(pg)?;
        self.committed(chain, held);
        Ok(seqs)
    }

    async fn record(&self, audit: &AuditDraft) -> AuditResult<u64> {
        let chain = self.inner.chain.clone();
        let seqs = self
            .append_audit(&chain, std::slice::from_ref(audit))
            .await?;
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT chain, seq, body FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&chain, &signed(after)?, &limit],
        )
        .await?
        .iter()
        .map(|r| Ok(record_row(r)?))
        .collect()
    }

    async fn audit_chains(&self) -> AuditResult<Vec<String>> {
        Ok(self
            // Every chain has a head row: no scan of the records.
            .query(
                "SELECT chain FROM audit_heads h WHERE EXISTS (SELECT 1 FROM audit_log a WHERE a.chain = h.chain) ORDER BY chain",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
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
        let (previous, through) = (signed(previous)?, signed(through)?);
        Ok(self.change(audit, move |tx| {
            Box::pin(async move {
                // Archivings of one chain take turns, without holding up its writer (which
                // locks the head row) while the old records are deleted.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('latch archive ' || $1))",
                    &[&chain],
                )
                .await
                .map_err(pg)?;
                let current: i64 = tx
                    .query_opt(
                        "SELECT through_seq FROM audit_archives WHERE chain = $1",
                        &[&chain],
                    )
                    .await
                    .map_err(pg)?
                    .map_or(0, |r| r.get(0));
                if current != previous {
                    return Err(unavailable(
                        "another archiving of this chain ran meanwhile; nothing was removed",
                    ));
                }
                for table in ["audit_log", "audit_index"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE chain = $1 AND seq <= $2"),
                        &[&chain, &through],
                    )
                    .await
                    .map_err(pg)?;
                }
                tx.execute(
                    "INSERT INTO audit_archives (chain, through_seq, frontier) VALUES ($1, $2, $3)
                     ON CONFLICT (chain) DO UPDATE SET through_seq = excluded.through_seq, frontier = excluded.frontier",
                    &[&chain, &through, &frontier],
                )
                .await
                .map_err(pg)?;
                Ok(())
            })
        })
        .await?)
    }

    async fn audit_archive(&self, chain: &str) -> AuditResult<Option<(u64, Vec<u8>)>> {
        self.query_opt(
            "SELECT through_seq, frontier FROM audit_archives WHERE chain = $1",
            &[&chain],
        )
        .await?
        .map(|r| Ok((unsigned(r.get(0))?, r.get(1))))
        .transpose()
    }

    async fn audit_head(&self, chain: &str) -> AuditResult<u64> {
        let row = self
            .query_opt("SELECT max(seq) FROM audit_log WHERE chain = $1", &[&chain])
            .await?;
        Ok(unsigned(
            row.and_then(|r| r.get::<_, Option<i64>>(0)).unwrap_or(0),
        )?)
    }

    async fn audit_leaves(&self, chain: &str) -> AuditResult<Vec<[u8; 32]>> {
        Ok(self
            .query(
                "SELECT body FROM audit_log WHERE chain = $1 ORDER BY seq",
                &[&chain],
            )
            .await?
            .iter()
            .map(|r| latch_core::merkle::leaf_hash(r.get::<_, &str>(0).as_bytes()))
            .collect())
    }

    async fn index_audit(&self) -> AuditResult<()> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::index(conn.client_mut()?).await.map(|_| ())?)
    }

    async fn audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        from: u64,
        to: u64,
    ) -> AuditResult<Vec<(u64, [u8; 32])>> {
        let conn = self.inner.pool.get().await?;
        Ok(audit_chains::subtrees(conn.client()?, chain, height, from, to).await?)
    }

    async fn put_audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        roots: &[(u64, [u8; 32])],
    ) -> AuditResult<()> {
        let conn = self.inner.pool.get().await?;
        Ok(audit_chains::put_subtrees(conn.client()?, chain, height, roots).await?)
    }

    async fn reindex_audit(&self) -> AuditResult<u64> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::reindex(conn.client_mut()?).await?)
    }

    async fn audit_frontier(
        &self,
        chain: &str,
    ) -> AuditResult<Option<latch_core::checkpoint::Frontier>> {
        let mut conn = self.inner.pool.get().await?;
        Ok(
            audit_chains::checked_frontier(conn.client_mut()?, &self.inner.audit, chain)
                .await
                .map(Some)?,
        )
    }

    async fn query_audit(
        &self,
        q: &AuditQuery,
    ) -> AuditResult<(Vec<StoredAuditRecord>, Option<i64>)> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::query(conn.client_mut()?, q).await?)
    }

    async fn issuer_of(&self, jti: &str) -> AuditResult<Option<String>> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::issuer_of(conn.client_mut()?, jti).await?)
    }

    async fn add_checkpoint(
        &self,
        checkpoint: &latch_core::checkpoint::Checkpoint,
    ) -> AuditResult<()> {
        let body = serde_json::to_string(checkpoint).map_err(|e| corrupt(&e.to_string()))?;
        let conn = self.inner.pool.get().await?;
        conn.client()?
            .execute(
                "INSERT INTO checkpoints (chain, size, body, time) VALUES ($1, $2, $3, $4)",
                &[
                    &checkpoint.chain,
                    &signed(checkpoint.size)?,
                    &body,
                    &checkpoint.time.0,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn checkpoints(
        &self,
        chain: &str,
    ) -> AuditResult<Vec<latch_core::checkpoint::Checkpoint>> {
        self.query(
            "SELECT body FROM checkpoints WHERE chain = $1 ORDER BY id",
            &[&chain],
        )
        .await?
        .iter()
        .map(|r| {
            serde_json::from_str(r.get(0))
                .map_err(|e| latch_audit::AuditError::Corrupt(e.to_string()))
        })
        .collect()
    }
}

fn record_row(row: &Row) -> Result<StoredAuditRecord> {
    let body: String = row.try_get(2).map_err(pg)?;
    Ok(StoredAuditRecord {
        chain: row.try_get(0).map_err(pg)?,
        seq: unsigned(row.try_get(1).map_err(pg)?)?,
        hash: audit::record_hash(&body),
        body,
    })
}
