//! What the services cannot beat, measured in this process in the same run: raw ES256 signing
//! and verification per core, and the audit log's durable commit rate and CPU per record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::{ResourceId, UnixTime};
use ring::rand::SystemRandom;

/// Seconds one ES256 signature and one verification take on one core (all cores busy).
pub(crate) fn es256(cores: usize, duration: Duration) -> Result<(f64, f64), String> {
    let rng = SystemRandom::new();
    let key = latch_core::SigningKey::generate(&rng).map_err(|e| e.to_string())?;
    let message = [7u8; 300];
    let signature = key.sign_bytes(&message, &rng).map_err(|e| e.to_string())?;
    let point = key.public_key().point().to_vec();
    let key = Arc::new(key);
    let per_core = |work: Arc<dyn Fn() + Send + Sync>| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let work = work.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        work();
                        n += 1;
                    }
                    start.elapsed().as_secs_f64() / n as f64
                })
            })
            .collect();
        let times: Vec<f64> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
        times.iter().sum::<f64>() / times.len().max(1) as f64
    };
    let signing = {
        let key = key.clone();
        per_core(Arc::new(move || {
            let _ = key.sign_bytes(&message, &SystemRandom::new());
        }))
    };
    let verifying = per_core(Arc::new(move || {
        let _ = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &point,
        )
        .verify(&message, &signature);
    }));
    Ok((signing, verifying))
}

/// What the audit log costs, measured through the group-commit writer on the embedded store.
pub(crate) struct AuditFloor {
    /// Durable records per second.
    pub(crate) per_second: f64,
    /// This process's CPU time per record (the callers' side included), in seconds, until each
    /// record was durable in the journal: the index built behind it is not counted.
    pub(crate) cpu_per_record: f64,
    /// The same, with the index brought up to the last record: what a record costs in all.
    pub(crate) cpu_per_record_indexed: f64,
    /// Records per commit.
    pub(crate) per_commit: f64,
}

/// A Face usage record as the front writes it: an accepted `identify` by `client`'s Key1 with
/// a token `isv` issued.
pub(crate) fn usage(
    time: UnixTime,
    request_id: String,
    client: &ResourceId,
    isv: &ResourceId,
    jti: String,
) -> AuditDraft {
    AuditDraft {
        time,
        request_id: Some(request_id),
        actor: Actor::Resource {
            resource: client.clone(),
            slot: latch_core::audit::KeySlot::Key1,
        },
        event: AuditEvent::LimitedAccessTokenUsed {
            resource: client.clone(),
            operation: "identify".into(),
            outcome: "accepted".into(),
            reason: None,
            jti: Some(jti),
            isv: Some(isv.clone()),
            fingerprint: "qf8Xbq3o3Gx1fS1m2o6M0w".into(),
        },
    }
}

/// The embedded store's thread that indexes the audit journal, by name.
const INDEXER: &str = "latch-audit-index";

/// Durable usage records, as the Face front writes them (full-length resource ids, a jti and a
/// fingerprint), through the group-commit writer on the embedded store, with `writers` callers
/// waiting on it at once: the rate, and the CPU each record costs.
pub(crate) async fn audit_commits(
    writers: usize,
    duration: Duration,
) -> Result<AuditFloor, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store: Arc<dyn latch_store::Store> = Arc::new(
        latch_store::sqlite::SqliteStore::open(dir.path(), "bench", &SystemRandom::new())
            .map_err(|e| e.to_string())?,
    );
    let resource = |sub: &str, name: &str| {
        ResourceId::parse(&format!("/subscriptions/{sub}/resourceGroups/bench/providers/Microsoft.CognitiveServices/accounts/{name}"))
            .map_err(|e| e.to_string())
    };
    let client = resource("22222222-2222-4222-8222-222222222222", "bench-client")?;
    let isv = resource("11111111-1111-4111-8111-111111111111", "bench-isv")?;
    let (log, writer) = latch_audit::writer::AuditLog::spawn(store.clone(), "bench");
    let stats = log.shared_stats();
    let ticks = crate::server::clock_ticks();
    let cpu_before = crate::server::process_cpu("self", ticks);
    let indexer_before = crate::server::threads_cpu(INDEXER);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (log, client, isv) = (log.clone(), client.clone(), isv.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    let draft = usage(
                        UnixTime(1_800_000_000),
                        "5f0c6a8e-0f5d-4c43-9a52-0b6f0e1d2c3b".into(),
                        &client,
                        &isv,
                        "9d3b1f0a-7c1e-4f7b-8a55-3c2d1e0f9a8b".into(),
                    );
                    if log.record(draft).await.is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_all = crate::server::process_cpu("self", ticks) - cpu_before;
    let indexer = crate::server::threads_cpu_since(
        &indexer_before,
        &crate::server::threads_cpu(INDEXER),
        ticks,
    );
    let cpu = cpu_all.saturating_sub(indexer).as_secs_f64();
    // Reading the head brings the index up to the last record.
    store.audit_head("bench").await.map_err(|e| e.to_string())?;
    let cpu_indexed = (crate::server::process_cpu("self", ticks) - cpu_before).as_secs_f64();
    drop(log);
    let _ = writer.await;
    let batches = stats
        .batches
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(1);
    Ok(AuditFloor {
        per_second: total as f64 / elapsed,
        cpu_per_record: cpu / total.max(1) as f64,
        cpu_per_record_indexed: cpu_indexed / total.max(1) as f64,
        per_commit: total as f64 / batches as f64,
    })
}
