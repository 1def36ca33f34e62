//! The anonymous flood, and the audit records it leaves.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use latch_audit::AuditStore;
use serde_json::Value;

use super::attack::{ip_after, tls_from};
use super::{FLOOD, FLOOD_ADDRESSES, FLOOD_CONNECTIONS};
use crate::load;

/// What the anonymous flood got back.
#[derive(Debug, Default)]
pub(super) struct Flood {
    pub(super) statuses: BTreeMap<u16, u64>,
    /// Requests with no answer (the connection failed under them).
    pub(super) unanswered: u64,
    pub(super) connect_failures: u64,
    pub(super) elapsed: Duration,
}

/// `FLOOD` requests to issue a token without a key (even ones) or with a wrong key (odd ones).
pub(super) async fn flood(
    sts: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    body: Bytes,
) -> Result<Flood, String> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..FLOOD_CONNECTIONS)
        .map(|c| {
            let (tls, body, next) = (tls.clone(), body.clone(), next.clone());
            let source = ip_after(Ipv4Addr::new(127, 0, 1, 1), c % FLOOD_ADDRESSES);
            tokio::spawn(async move {
                let mut got = Flood::default();
                let mut open = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= FLOOD {
                        break;
                    }
                    let mut sender = match open.take() {
                        Some(sender) => sender,
                        None => match http_from(source, sts, &tls).await {
                            Ok(sender) => sender,
                            Err(_) => {
                                got.connect_failures += 1;
                                got.unanswered += 1;
                                tokio::time::sleep(load::RECONNECT_PAUSE).await;
                                continue;
                            }
                        },
                    };
                    let mut request = Request::builder()
                        .method("POST")
                        .uri("/sts/v1.0/issueLimitedAccessToken")
                        .header("host", sts.to_string())
                        .header("content-type", "application/json");
                    if i % 2 == 1 {
                        request = request.header(
                            "Ocp-Apim-Subscription-Key",
                            "0123456789abcdef0123456789abcdef",
                        );
                    }
                    let request = request
                        .body(Full::new(body.clone()))
                        .map_err(|e| e.to_string())?;
                    match sender.send_request(request).await {
                        Ok(response) => {
                            *got.statuses.entry(response.status().as_u16()).or_default() += 1;
                            let _ = response.into_body().collect().await;
                        }
                        Err(_) => got.unanswered += 1,
                    }
                    if sender.ready().await.is_ok() {
                        open = Some(sender);
                    }
                }
                Ok::<_, String>(got)
            })
        })
        .collect();
    let mut all = Flood::default();
    for task in tasks {
        let got = task.await.map_err(|e| e.to_string())??;
        for (status, n) in got.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
        all.unanswered += got.unanswered;
        all.connect_failures += got.connect_failures;
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// A keep-alive HTTP/1.1 connection over TLS to `target` from `source`.
async fn http_from(
    source: IpAddr,
    target: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tls_from(source, target, tls).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The head (highest sequence number) of every audit chain in the server's store.
pub(super) async fn audit_heads(data_dir: &Path) -> Result<BTreeMap<String, u64>, String> {
    let store = open_store(data_dir)?;
    let mut heads = BTreeMap::new();
    for chain in store.audit_chains().await.map_err(|e| e.to_string())? {
        let head = store.audit_head(&chain).await.map_err(|e| e.to_string())?;
        heads.insert(chain, head);
    }
    Ok(heads)
}

fn open_store(data_dir: &Path) -> Result<latch_store::sqlite::SqliteStore, String> {
    let rng = ring::rand::SystemRandom::new();
    latch_store::sqlite::SqliteStore::open(data_dir, "bench", &rng).map_err(|e| e.to_string())
}

/// Added records read for their types, at most, per chain.
const TYPES_OF: usize = 10_000;

/// The records added to each chain after `before`: how many, how many of each event type
/// (of the first [`TYPES_OF`]), and the refusals the `refusals_counted` records among them
/// count.
pub(super) async fn audit_added(
    data_dir: &Path,
    before: &BTreeMap<String, u64>,
) -> Result<(u64, BTreeMap<String, u64>, u64), String> {
    let store = open_store(data_dir)?;
    let (mut added, mut types, mut refusals) = (0, BTreeMap::new(), 0);
    for chain in store.audit_chains().await.map_err(|e| e.to_string())? {
        let from = before.get(&chain).copied().unwrap_or(0);
        let head = store.audit_head(&chain).await.map_err(|e| e.to_string())?;
        added += head.saturating_sub(from);
        let records = store
            .audit_records(&chain, from, TYPES_OF)
            .await
            .map_err(|e| e.to_string())?;
        for record in records {
            let body: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
            let event = &body["event"];
            let kind = event["type"].as_str().unwrap_or("?").to_owned();
            if kind == "refusals_counted" {
                refusals += event["count"].as_u64().unwrap_or(0);
            }
            *types.entry(kind).or_default() += 1;
        }
    }
    Ok((added, types, refusals))
}
