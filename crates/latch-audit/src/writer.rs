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
//!
//! A writer started with a [`Spool`] (the Face front's, when `face.store_outage = "cached"`)
//! does not refuse when the store fails: it appends the batch to a local, owner-only file,
//! synced to disk, and answers sequence number 0 ("spooled"). Before its next batch it moves
//! the spooled records into the chain, in their order, in one transaction, and empties the
//! file. The spool has a size limit; beyond it, the writer refuses as any other. (A crash
//! between that commit and emptying the file would append the spooled records twice: visible
//! duplicates, never a loss.) Token issuance never uses a spool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use latch_core::audit::AuditDraft;
use tokio::sync::{mpsc, oneshot};

use crate::{AuditError, AuditStore};

/// The most records committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// How many records may wait for the writer before callers wait to enqueue.
pub const QUEUE: usize = 8192;

struct Job {
    draft: AuditDraft,
    done: oneshot::Sender<Result<u64, AuditError>>,
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
        store: Arc<dyn AuditStore>,
        chain: impl Into<String>,
    ) -> (AuditLog, tokio::task::JoinHandle<()>) {
        Self::start(store, chain.into(), None)
    }

    /// Like [`AuditLog::spawn`], but a batch the store refuses is kept in `spool` and moved into
    /// the chain once the store is back.
    pub fn spawn_spooled(
        store: Arc<dyn AuditStore>,
        chain: impl Into<String>,
        spool: Spool,
    ) -> (AuditLog, tokio::task::JoinHandle<()>) {
        Self::start(store, chain.into(), Some(spool))
    }

    fn start(
        store: Arc<dyn AuditStore>,
        chain: String,
        spool: Option<Spool>,
    ) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(AuditStats::default());
        let task = tokio::spawn(writer(store, chain, rx, stats.clone(), spool));
        (AuditLog { queue, stats }, task)
    }

    /// Appends a record and waits until it is committed; returns its sequence number.
    pub async fn record(&self, draft: AuditDraft) -> Result<u64, AuditError> {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Job { draft, done }).await.is_err() {
            return Err(AuditError::Unavailable(
                "the audit writer has stopped".into(),
            ));
        }
        // Counted once in the queue (the writer may already have taken it: the count then
        // dips below zero for a moment, and is read as zero).
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match wait.await {
            Ok(answer) => answer,
            Err(_) => Err(AuditError::Unavailable(
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

/// Where a writer keeps the records the store refused, until it takes them again.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    max_bytes: u64,
}

/// A spooled record: an [`AuditDraft`], as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct Spooled {
    time: latch_core::UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    actor: latch_core::audit::Actor,
    event: latch_core::audit::AuditEvent,
}

impl Spool {
    /// The default size limit.
    pub const MAX_BYTES: u64 = 64 << 20;

    /// A spool in the file at `path` (kept across restarts: records found there at start are
    /// moved into the chain first).
    pub fn at(path: PathBuf) -> Spool {
        Spool {
            path,
            max_bytes: Self::MAX_BYTES,
        }
    }

    fn is_empty(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0)
    }

    /// Appends drafts, synced to disk.
    fn keep(&self, drafts: &[AuditDraft]) -> std::io::Result<()> {
        use std::io::Write;
        let mut text = String::new();
        for d in drafts {
            let line = Spooled {
                time: d.time,
                request_id: d.request_id.clone(),
                actor: d.actor.clone(),
                event: d.event.clone(),
            };
            text.push_str(&serde_json::to_string(&line).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let used = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if used + text.len() as u64 > self.max_bytes {
            return Err(std::io::Error::other("the audit spool is full"));
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }

    fn read(&self) -> std::io::Result<Vec<AuditDraft>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let s: Spooled = serde_json::from_str(l).map_err(std::io::Error::other)?;
                Ok(AuditDraft {
                    time: s.time,
                    request_id: s.request_id,
                    actor: s.actor,
                    event: s.event,
                })
            })
            .collect()
    }

    fn clear(&self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(0)?;
        file.sync_all()
    }
}

/// Moves spooled records into the chain; true when the spool is empty afterwards.
async fn drain(store: &dyn AuditStore, chain: &str, spool: &Spool, stats: &AuditStats) -> bool {
    if spool.is_empty() {
        return true;
    }
    let drafts = match spool.read() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(target: "latch::audit", error = %e, "cannot read the audit spool");
            return false;
        }
    };
    match store.append_audit(chain, &drafts).await {
        Ok(seqs) => {
            count(stats, &drafts, seqs.len());
            if let Err(e) = spool.clear() {
                tracing::error!(target: "latch::audit", error = %e, "spooled records are in the log but the spool cannot be emptied");
                return false;
            }
            tracing::info!(target: "latch::audit", records = drafts.len(), "spooled audit records moved into the log");
            true
        }
        Err(_) => false,
    }
}

fn count(stats: &AuditStats, drafts: &[AuditDraft], committed: usize) {
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.records.fetch_add(committed as u64, Ordering::Relaxed);
    if let Ok(mut counts) = stats.by_kind.lock() {
        for draft in drafts {
            let index = draft.event.index();
            *counts.entry((index.kind, index.outcome)).or_default() += 1;
        }
    }
}

async fn writer(
    store: Arc<dyn AuditStore>,
    chain: String,
    mut rx: mpsc::Receiver<Job>,
    stats: Arc<AuditStats>,
    spool: Option<Spool>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        gather(&mut rx, &mut jobs).await;
        stats.queued.fetch_sub(
            i64::try_from(jobs.len()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        let (drafts, waiting): (Vec<AuditDraft>, Vec<_>) =
            jobs.drain(..).map(|j| (j.draft, j.done)).unzip();
        // Spooled records go first, so the chain keeps the order things happened in.
        let drained = match &spool {
            Some(spool) => drain(store.as_ref(), &chain, spool, &stats).await,
            None => true,
        };
        let appended = if drained {
            store.append_audit(&chain, &drafts).await
        } else {
            Err(AuditError::Unavailable(
                "the store has not taken the spooled records yet".into(),
            ))
        };
        match appended {
            Ok(seqs) => {
                count(&stats, &drafts, seqs.len());
                for (done, seq) in waiting.into_iter().zip(seqs) {
                    let _ = done.send(Ok(seq));
                }
            }
            Err(e) => {
                if let Some(spool) = &spool {
                    match spool.keep(&drafts) {
                        Ok(()) => {
                            tracing::warn!(target: "latch::audit", error = %e, records = drafts.len(), "audit records spooled until the store is back");
                            for done in waiting {
                                let _ = done.send(Ok(0));
                            }
                            continue;
                        }
                        Err(spool_error) => {
                            tracing::error!(target: "latch::audit", error = %spool_error, "cannot spool audit records");
                        }
                    }
                }
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "latch::audit", error = %e, records = drafts.len(), "audit commit failed; the requests waiting on it are refused");
                for done in waiting {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// How many times the writer lets ready tasks go first before it commits.
const GATHER_ROUNDS: usize = 4;

/// Lets the tasks that are ready to run go first, and takes what they add to the queue into
/// this batch, while they keep adding, [`GATHER_ROUNDS`] times at most: a commit costs the same
/// few system calls and one `fsync` whatever its size, so a batch that waits for requests
/// already on their way costs each of them less CPU, and the first of them waits no more than
/// a few turns of the scheduler.
async fn gather(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    for _ in 0..GATHER_ROUNDS {
        if jobs.len() >= MAX_BATCH {
            break;
        }
        tokio::task::yield_now().await;
        let before = jobs.len();
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if jobs.len() == before {
            break;
        }
    }
}
