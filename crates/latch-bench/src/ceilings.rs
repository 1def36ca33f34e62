//! What the services cannot beat, measured in this process in the same run: raw ES256 signing
//! and verification per core, and the audit log's durable commit rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::UnixTime;
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

/// Durable audit records per second through the group-commit writer on the embedded store,
/// with `writers` callers waiting on it at once.
pub(crate) async fn audit_commits(writers: usize, duration: Duration) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store: Arc<dyn latch_store::Store> = Arc::new(
        latch_store::sqlite::SqliteStore::open(dir.path(), "bench", &SystemRandom::new())
            .map_err(|e| e.to_string())?,
    );
    let (log, writer) = latch_store::audit_log::AuditLog::spawn(store, "bench");
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    let draft = AuditDraft {
                        time: UnixTime(1_800_000_000),
                        request_id: None,
                        actor: Actor::System,
                        event: AuditEvent::AccessTokenRefused {
                            reason: "bench".into(),
                            status: 401,
                        },
                    };
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
    let rate = total as f64 / start.elapsed().as_secs_f64();
    drop(log);
    let _ = writer.await;
    Ok(rate)
}
