//! Group commit for audit records.
//!
//! A request that must be audited before it is answered calls [`AuditLog::record`] and waits.
//! One writer task takes every record waiting in the queue, appends them to the store in one
//! transaction (one `fsync`), and then wakes each caller with its sequence number, or with the
//! error if the commit failed. Under load, commits grow instead of multiplying, so durability
//! costs one disk flush per batch, not per request.
//!
//! Fail closed: a caller that gets an error must not act (no token is returned); the records of
//! a failed batch are not in the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use latch_core::audit::AuditDraft;
use tokio::sync::{mpsc, oneshot};

use crate::{Store, StoreError};

/// The most records committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// How many records may wait for the writer before callers wait to enqueue.
pub const QUEUE: usize = 8192;

struct Job {
    draft: AuditDraft,
    done: oneshot::Sender<Result<u64, String>>,
}

/// Counters of the writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records committed.
    pub records: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Batches that failed.
    pub failures: AtomicU64,
    /// Records committed, by event type and outcome (`limited_access_token_issued`,
    /// `success`): issuance and use counts for metrics.
    pub by_kind: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Records handed to the writer and not yet taken into a batch.
    pub queued: AtomicI64,
}

impl AuditStats {
    /// The per-type counts, copied.
    pub fn counts(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        match self.by_kind.lock() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Job>,
    stats: Arc<AuditStats>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer for `chain` on the current Tokio runtime. It stops once every handle is
    /// dropped and the queue is empty.
    pub fn spawn(
        store: Arc<dyn Store>,
        chain: impl Into<String>,
    ) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(AuditStats::default());
        let task = tokio::spawn(writer(store, chain.into(), rx, stats.clone()));
        (AuditLog { queue, stats }, task)
    }

    /// Appends a record and waits until it is committed; returns its sequence number.
    pub async fn record(&self, draft: AuditDraft) -> Result<u64, StoreError> {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Job { draft, done }).await.is_err() {
            return Err(StoreError::Unavailable(
                "the audit writer has stopped".into(),
            ));
        }
        // Counted once in the queue (the writer may already have taken it: the count then
        // dips below zero for a moment, and is read as zero).
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(msg)) => Err(StoreError::Unavailable(msg)),
            Err(_) => Err(StoreError::Unavailable(
                "the audit writer has stopped".into(),
            )),
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// The writer's counters, to read after this handle is gone (a handle keeps the writer
    /// running; the counters do not).
    pub fn shared_stats(&self) -> Arc<AuditStats> {
        self.stats.clone()
    }

    /// Records waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        QUEUE - self.queue.capacity()
    }
}

async fn writer(
    store: Arc<dyn Store>,
    chain: String,
    mut rx: mpsc::Receiver<Job>,
    stats: Arc<AuditStats>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        stats.queued.fetch_sub(
            i64::try_from(jobs.len()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        let drafts: Vec<AuditDraft> = jobs.iter().map(|j| j.draft.clone()).collect();
        match store.append_audit(&chain, &drafts).await {
            Ok(seqs) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .records
                    .fetch_add(seqs.len() as u64, Ordering::Relaxed);
                if let Ok(mut counts) = stats.by_kind.lock() {
                    for draft in &drafts {
                        let index = draft.event.index();
                        *counts.entry((index.kind, index.outcome)).or_default() += 1;
                    }
                }
                for (job, seq) in jobs.drain(..).zip(seqs) {
                    let _ = job.done.send(Ok(seq));
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "latch::audit", error = %e, records = jobs.len(), "audit commit failed; the requests waiting on it are refused");
                let msg = e.to_string();
                for job in jobs.drain(..) {
                    let _ = job.done.send(Err(msg.clone()));
                }
            }
        }
    }
}
