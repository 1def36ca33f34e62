//! `sustained`: token issuance against an audit log that already holds many records, beside the
//! same against an empty log, in one run; and what a large log costs its readers.
//!
//! The log is filled before the server starts, through the embedded store as the server writes
//! it (sealed records in the journal, then indexed), with usage records of many tokens. Then:
//!
//! - start-up to ready on the full log, and on an empty one;
//! - issuance at each connection count on both, CPU per request and p99;
//! - a query by jti (a record from the middle of the log), through the store as an auditor's
//!   command opens it, beside the same on the small log;
//! - a checkpoint, on both;
//! - the data directory's size per record, journal and index together;
//! - `latch audit export` and `latch audit verify` over the whole log, in records per second, and
//!   the peak resident size of each.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latch_audit::{AuditQuery, AuditStore};
use latch_core::audit::AuditDraft;
use latch_core::{FixedClock, ResourceId, UnixTime};
use latch_store::sqlite::SqliteStore;
use latch_store::Store;
use ring::rand::SystemRandom;
use serde_json::{json, Value};

use crate::server::Server;

/// Records per append while filling.
const FILL_BATCH: u64 = 2_000;

fn resource(sub: u64, name: &str) -> Result<ResourceId, String> {
    ResourceId::parse(&format!(
        "/subscriptions/{:08x}-2222-4222-8222-222222222222/resourceGroups/bench/providers/Microsoft.CognitiveServices/accounts/{name}",
        sub
    ))
    .map_err(|e| e.to_string())
}

/// The jti of the `n`th record filled in.
fn jti(n: u64) -> String {
    format!("fill-{n:012}")
}

/// Fills the store in `data` with `records` usage records (of 1,000 clients, 50 ISVs), indexed.
async fn fill(data: &Path, records: u64) -> Result<Duration, String> {
    let store = SqliteStore::open(data, "main", &SystemRandom::new()).map_err(|e| e.to_string())?;
    let clients: Vec<ResourceId> = (0..1_000)
        .map(|i| resource(i, &format!("client-{i}")))
        .collect::<Result<_, _>>()?;
    let isvs: Vec<ResourceId> = (0..50)
        .map(|i| resource(1_000_000 + i, &format!("isv-{i}")))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut n = 0;
    while n < records {
        let take = FILL_BATCH.min(records - n);
        let drafts: Vec<AuditDraft> = (n..n + take)
            .map(|i| {
                crate::ceilings::usage(
                    UnixTime(1_700_000_000 + (i / 100) as i64),
                    format!("5f0c6a8e-0f5d-4c43-9a52-{i:012}"),
                    &clients[(i % 1_000) as usize],
                    &isvs[(i % 50) as usize],
                    jti(i),
                )
            })
            .collect();
        store
            .append_audit("main", &drafts)
            .await
            .map_err(|e| e.to_string())?;
        n += take;
    }
    // A query brings the index up to the last record.
    query_jti(&store, &jti(0)).await?;
    Ok(started.elapsed())
}

async fn query_jti(store: &dyn Store, jti: &str) -> Result<usize, String> {
    let (found, _) = store
        .query_audit(&AuditQuery {
            jti: Some(jti.to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(found.len())
}

/// Bytes of the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += size_of(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// What one log gives: start-up, issuance, query, checkpoint.
struct Measured {
    startup: Duration,
    issuance: Vec<(usize, f64, f64, f64)>,
    query: Duration,
    checkpoint: Duration,
}

async fn measure(
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    connections: &[usize],
    duration: Duration,
    jti: &str,
) -> Result<Measured, String> {
    let sts = crate::addr(&server.sts)?;
    let scenario = Arc::new(crate::issuance(
        &server.demo("ISV_KEY")?,
        &server.demo("CLIENT_RESOURCE_ID")?,
    ));
    let mut issuance = Vec::new();
    for &c in connections {
        let before = server.cpu();
        let outcome = crate::load::run(sts, tls.clone(), scenario.clone(), c, duration).await?;
        let cpu = (server.cpu() - before).as_secs_f64() / outcome.requests.max(1) as f64;
        issuance.push((c, outcome.per_second(), cpu, outcome.quantile_ms(0.99)));
    }
    // The store as an auditor's command opens it, beside the running server.
    let store = SqliteStore::open(&server.data_dir(), "bench-reader", &SystemRandom::new())
        .map_err(|e| e.to_string())?;
    query_jti(&store, jti).await?;
    let started = Instant::now();
    let found = query_jti(&store, jti).await?;
    let query = started.elapsed();
    if found != 1 {
        return Err(format!("the query by jti found {found} records, not 1"));
    }
    let signer = latch_audit::signer::AuditSigner::open(
        &server.data_dir(),
        &store,
        &SystemRandom::new(),
        &FixedClock::at(UnixTime(1_800_000_000)),
    )
    .await
    .map_err(|e| e.to_string())?;
    let owner = SqliteStore::open(&server.data_dir(), "main", &SystemRandom::new())
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    latch_audit::signer::checkpoint(
        &owner,
        &signer,
        "main",
        &SystemRandom::new(),
        &FixedClock::at(UnixTime(1_800_000_000)),
    )
    .await
    .map_err(|e| e.to_string())?;
    let checkpoint = started.elapsed();
    Ok(Measured {
        startup: server.startup,
        issuance,
        query,
        checkpoint,
    })
}

/// Runs `latch` with `args` on the data directory of `server`; its duration.
fn latch(binary: &Path, server: &Server, args: &[&str]) -> Result<(Duration, u64), String> {
    let started = Instant::now();
    let mut child = std::process::Command::new(binary)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(args)
        .env_remove("LATCH_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stderr = child.stderr.take();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut text);
        }
        text
    });
    // Its peak resident size, as last seen before it ended.
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        peak = peak.max(crate::server::peak_resident(child.id()));
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    if !status.success() {
        return Err(format!(
            "latch {}: {}",
            args.join(" "),
            said.join().unwrap_or_default()
        ));
    }
    Ok((elapsed, peak))
}

/// The scenario; its report.
pub(crate) async fn bench(
    binary: &Path,
    records: u64,
    connections: &[usize],
    duration: Duration,
) -> Result<Value, String> {
    println!("\nsustained: filling a log with {records} records...");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let fill_time = fill(&dir.path().join("data"), records).await?;
    println!(
        "  filled in {:.1} s ({:.0} records/s, sealed, synced and indexed)",
        fill_time.as_secs_f64(),
        records as f64 / fill_time.as_secs_f64()
    );
    let full = Server::start_in(dir, binary, None)?;
    let empty = Server::start(binary, None)?;
    let tls = Arc::new(crate::trust(
        &full.data_dir().join("tls").join("dev-cert.pem"),
    )?);
    let tls_empty = Arc::new(crate::trust(
        &empty.data_dir().join("tls").join("dev-cert.pem"),
    )?);
    fill_small(&empty.data_dir()).await?;
    let empty_measured = measure(&empty, &tls_empty, connections, duration, &jti(500)).await?;
    let full_measured = measure(&full, &tls, connections, duration, &jti(records / 2)).await?;

    let per_record = size_of(&full.data_dir()) as f64 / records as f64;
    let exported = export_and_verify(binary, &full)?;

    println!(
        "  start-up to ready: {} ms on the full log, {} ms on an empty one",
        full_measured.startup.as_millis(),
        empty_measured.startup.as_millis()
    );
    let rows = print_issuance(&full_measured, &empty_measured);
    print_costs(
        &full_measured,
        &empty_measured,
        records,
        per_record,
        &exported,
    );
    Ok(json!({
        "records": records,
        "fillSecs": fill_time.as_secs_f64(),
        "startupMs": {"full": full_measured.startup.as_millis() as u64, "empty": empty_measured.startup.as_millis() as u64},
        "issuance": rows,
        "queryByJtiMs": {"full": full_measured.query.as_secs_f64() * 1e3, "small": empty_measured.query.as_secs_f64() * 1e3},
        "checkpointMs": {"full": full_measured.checkpoint.as_secs_f64() * 1e3, "small": empty_measured.checkpoint.as_secs_f64() * 1e3},
        "bytesPerRecord": per_record,
        "exportRecordsPerSecond": records as f64 / exported.export_s.as_secs_f64(),
        "verifyRecordsPerSecond": records as f64 / exported.verify_s.as_secs_f64(),
        "exportPeakBytes": exported.export_peak,
        "verifyPeakBytes": exported.verify_peak,
    }))
}

/// How long exporting the full log and verifying the export took, and the commands' peak
/// resident sizes.
struct Exported {
    export_s: Duration,
    export_peak: u64,
    verify_s: Duration,
    verify_peak: u64,
}

/// Exports the log of `full` with `latch audit export` and verifies the export with `latch
/// audit verify`, against the audit key; the export is removed after.
fn export_and_verify(binary: &Path, full: &Server) -> Result<Exported, String> {
    let key_file = full.data_dir().join("bench-audit-key.json");
    let key = std::process::Command::new(binary)
        .arg("--data-dir")
        .arg(full.data_dir())
        .args(["--json", "audit", "key"])
        .output()
        .map_err(|e| e.to_string())?;
    std::fs::write(&key_file, &key.stdout).map_err(|e| e.to_string())?;
    let export = full.dir.path().join("export.jsonl");
    let (export_s, export_peak) = latch(
        binary,
        full,
        &["audit", "export", "--out", &export.display().to_string()],
    )?;
    let (verify_s, verify_peak) = latch(
        binary,
        full,
        &[
            "audit",
            "verify",
            &export.display().to_string(),
            "--key-file",
            &key_file.display().to_string(),
        ],
    )?;
    let _ = std::fs::remove_file(&export);
    Ok(Exported {
        export_s,
        export_peak,
        verify_s,
        verify_peak,
    })
}

/// Prints issuance on the full log beside the empty one, at each connection count; the rows.
fn print_issuance(full: &Measured, empty: &Measured) -> Vec<Value> {
    println!(
        "  {:<12} {:>10} {:>12} {:>9} {:>10} {:>12} {:>9}   CPU, p99 vs empty",
        "connections", "full req/s", "CPU µs/req", "p99 ms", "empty req/s", "CPU µs/req", "p99 ms"
    );
    let mut rows = Vec::new();
    for (f, e) in full.issuance.iter().zip(&empty.issuance) {
        println!(
            "  {:<12} {:>10.0} {:>12.1} {:>9.2} {:>10.0} {:>12.1} {:>9.2}   {:+.1} %, {:+.1} %",
            f.0,
            f.1,
            f.2 * 1e6,
            f.3,
            e.1,
            e.2 * 1e6,
            e.3,
            (f.2 / e.2 - 1.0) * 100.0,
            (f.3 / e.3 - 1.0) * 100.0
        );
        rows.push(json!({
            "connections": f.0,
            "full": {"requestsPerSecond": f.1, "cpuMicrosPerRequest": f.2 * 1e6, "p99Ms": f.3},
            "empty": {"requestsPerSecond": e.1, "cpuMicrosPerRequest": e.2 * 1e6, "p99Ms": e.3},
        }));
    }
    rows
}

/// Prints what the full log costs beside the small one: a query, a checkpoint, the disk, and
/// exporting and verifying its `records`.
fn print_costs(
    full: &Measured,
    empty: &Measured,
    records: u64,
    per_record: f64,
    exported: &Exported,
) {
    println!(
        "  query by jti: {:.2} ms on the full log, {:.2} ms on a small one",
        full.query.as_secs_f64() * 1e3,
        empty.query.as_secs_f64() * 1e3
    );
    println!(
        "  checkpoint: {:.2} ms on the full log, {:.2} ms on a small one",
        full.checkpoint.as_secs_f64() * 1e3,
        empty.checkpoint.as_secs_f64() * 1e3
    );
    println!(
        "  on disk: {:.0} bytes per record (journal, index and the rest of the data directory)",
        per_record
    );
    println!(
        "  export: {:.1} s ({:.0} records/s, {:.0} MB peak resident); verify: {:.1} s ({:.0} records/s, {:.0} MB peak resident)",
        exported.export_s.as_secs_f64(),
        records as f64 / exported.export_s.as_secs_f64(),
        exported.export_peak as f64 / 1e6,
        exported.verify_s.as_secs_f64(),
        records as f64 / exported.verify_s.as_secs_f64(),
        exported.verify_peak as f64 / 1e6,
    );
}

/// A thousand records in the small log, so that its query by jti has one to find.
async fn fill_small(data: &Path) -> Result<(), String> {
    fill(data, 1_000).await.map(|_| ())
}
