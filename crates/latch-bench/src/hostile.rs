//! `hostile`: the STS under a connection attack, on a server of its own.
//!
//! The server is configured as the other scenarios' ([`Server::start`]): the default
//! connection bounds and timeouts (`[server]` left out), the STS rate limits lifted, since all
//! the well-behaved load comes from one key on one address (loopback).
//!
//! 1. `issuance` (the scenario of the same name) over each `--connections` count, from
//!    127.0.0.1: the unattacked figures.
//! 2. The attack, on the STS listener, from 127.0.0.2 onwards, at most [`PER_ADDRESS`]
//!    connections an address: [`IDLE_PLAIN`] TCP connections that stay silent (not even a TLS
//!    ClientHello), [`IDLE_TLS`] that complete the TLS handshake and stay silent, and
//!    [`SLOWLORIS`] that complete it and then send a request head one byte a second, never
//!    ending it. Each is opened again [`REOPEN_AFTER`] after the server closes it (or fails to
//!    accept it), so the pressure lasts. After every slot has made its first attempt, the
//!    attack runs [`ATTACK_WARM_UP`] (past the header and handshake timeouts, so the server
//!    has begun cutting and the attack re-opening) before anything is measured.
//! 3. `issuance` again, the same counts, while the attack goes on: the ratio to step 1, p99,
//!    failed requests (any status but 200, no answer, or a connection that could not be made),
//!    the server's resident memory (`VmRSS`, sampled every 100 ms).
//! 4. The attack stops. [`FLOOD`] `issueLimitedAccessToken` requests without a key or with a
//!    wrong one, from [`FLOOD_ADDRESSES`] addresses. The server is then stopped gracefully
//!    (SIGTERM: it writes its pending refusal summaries) and the audit records added since
//!    before the flood are counted in its store, by type.
//!
//! What the server did with the attack's connections comes from its metrics
//! (`latch_connections_closed_total` of the STS listener, by reason). Whether its log
//! (standard error) says "Too many open files" is checked at the end. Each target is printed
//! as a pass/fail line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use latch_audit::AuditStore;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::load::{self, Outcome, Scenario};
use crate::server::Server;

/// Silent TCP connections: connected, nothing sent.
const IDLE_PLAIN: usize = 2_500;
/// Silent TLS connections: handshake done, nothing sent.
const IDLE_TLS: usize = 2_500;
/// TLS connections sending a request head one byte a second.
const SLOWLORIS: usize = 200;
/// Attack connections per source address, at most (the server's own bound is 256).
const PER_ADDRESS: usize = 100;
/// How long an attack connection waits to open again after the server closed it.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Attack connections being opened at once (the kernel's accept queue is finite).
const OPENING: usize = 64;
/// How long a connect or a TLS handshake may take before the attempt counts as failed.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// How long the attack runs before the attacked rounds, once every slot has tried once.
const ATTACK_WARM_UP: Duration = Duration::from_secs(12);
/// Refused requests in the anonymous flood.
const FLOOD: u64 = 100_000;
/// The flood's connections, and the addresses they come from (127.0.1.1, 127.0.1.2, ...).
const FLOOD_CONNECTIONS: usize = 32;
const FLOOD_ADDRESSES: usize = 8;

/// The targets.
const MIN_RATIO: f64 = 0.80;
const MAX_P99_MS: f64 = 50.0;
const MAX_RSS_BYTES: u64 = 200_000_000;
const MAX_FLOOD_RECORDS: u64 = 1_000;

/// The kinds of attack connection, in the order of [`Attack::tally`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Tls,
    Slow,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Plain, "silent TCP"),
    (Kind::Tls, "silent TLS"),
    (Kind::Slow, "slowloris"),
];

/// What the attack connections of one kind went through.
#[derive(Debug, Default)]
struct Tally {
    /// Connections made (TCP connected, and for TLS kinds the handshake done).
    opened: AtomicU64,
    /// Open now, as far as this side knows.
    open: AtomicU64,
    /// Closed by the server.
    closed: AtomicU64,
    /// Attempts that failed: refused, reset, timed out, or the handshake failed.
    failed: AtomicU64,
}

/// The source address of attack slot `i`.
fn attack_source(i: usize) -> IpAddr {
    ip_after(Ipv4Addr::new(127, 0, 0, 2), i / PER_ADDRESS)
}

/// `base` plus `n` as a 32-bit number.
fn ip_after(base: Ipv4Addr, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(base).wrapping_add(u32::try_from(n).unwrap_or(u32::MAX)),
    ))
}

/// The kind of attack slot `i`: silent TCP and silent TLS alternate (so every address has
/// both), the slow ones come last.
fn attack_kind(i: usize) -> Kind {
    if i >= IDLE_PLAIN + IDLE_TLS {
        Kind::Slow
    } else if (i % 2 == 0 && i / 2 < IDLE_PLAIN) || i / 2 >= IDLE_TLS {
        Kind::Plain
    } else {
        Kind::Tls
    }
}

/// Byte `i` of a request head that never ends: a request line, then header lines forever.
fn slow_byte(i: usize) -> u8 {
    const START: &[u8] = b"POST /sts/v1.0/issueLimitedAccessToken HTTP/1.1\r\nHost: localhost\r\n";
    const MORE: &[u8] = b"X-Slow: a\r\n";
    match START.get(i) {
        Some(b) => *b,
        None => MORE[(i - START.len()) % MORE.len()],
    }
}

/// A TCP connection to `target` from `source`.
async fn tcp_from(source: IpAddr, target: SocketAddr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    // A port in TIME_WAIT from an earlier connection may be reused.
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let tcp = tokio::time::timeout(CONNECT_PATIENCE, socket.connect(target))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// A TLS connection to `target` from `source`, handshake done.
async fn tls_from(
    source: IpAddr,
    target: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = tcp_from(source, target).await?;
    let name = rustls_pki_types::ServerName::IpAddress(target.ip().into());
    tokio::time::timeout(
        CONNECT_PATIENCE,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_owned())?
    .map_err(|e| format!("TLS: {e}"))
}

/// Reads and drops whatever comes until the server closes the connection.
async fn until_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Sends a request head one byte a second, never ending it, until the server closes the
/// connection.
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tick.tick() => {
                let byte = [slow_byte(sent)];
                if stream.write_all(&byte).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                sent += 1;
            }
        }
    }
}

/// Resolves once `stop` says true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One attack slot: opens its connection, holds it until the server closes it, and again,
/// until stopped.
struct Slot {
    kind: Kind,
    source: IpAddr,
    target: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    tally: Arc<[Tally; 3]>,
    /// Slots that have made their first attempt.
    tried: Arc<AtomicUsize>,
    opening: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Slot {
    async fn run(self) {
        let Slot {
            kind,
            source,
            target,
            tls,
            tally,
            tried,
            opening,
            mut stop,
        } = self;
        let tally = &tally[kind as usize];
        let mut first = true;
        loop {
            let attempt = async {
                let _permit = opening.acquire().await;
                match kind {
                    Kind::Plain => tcp_from(source, target).await.map(Held::Plain),
                    Kind::Tls | Kind::Slow => tls_from(source, target, &tls)
                        .await
                        .map(|s| Held::Tls(Box::new(s))),
                }
            };
            let held = tokio::select! {
                held = attempt => held,
                () = stopped(&mut stop) => return,
            };
            if first {
                tried.fetch_add(1, Ordering::Relaxed);
                first = false;
            }
            match held {
                Ok(mut held) => {
                    tally.opened.fetch_add(1, Ordering::Relaxed);
                    tally.open.fetch_add(1, Ordering::Relaxed);
                    let hold = async {
                        match &mut held {
                            Held::Tls(s) if kind == Kind::Slow => trickle(s.as_mut()).await,
                            Held::Tls(s) => until_closed(s.as_mut()).await,
                            Held::Plain(s) => until_closed(s).await,
                        }
                    };
                    let closed = tokio::select! {
                        () = hold => true,
                        () = stopped(&mut stop) => false,
                    };
                    tally.open.fetch_sub(1, Ordering::Relaxed);
                    if !closed {
                        return;
                    }
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(REOPEN_AFTER) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }
}

enum Held {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The attack, running.
struct Attack {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<[Tally; 3]>,
    tried: Arc<AtomicUsize>,
    started: Instant,
}

impl Attack {
    const SLOTS: usize = IDLE_PLAIN + IDLE_TLS + SLOWLORIS;

    fn start(target: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Attack {
        let (stop, stop_rx) = watch::channel(false);
        let tally: Arc<[Tally; 3]> = Arc::new(Default::default());
        let tried = Arc::new(AtomicUsize::new(0));
        let opening = Arc::new(Semaphore::new(OPENING));
        let tasks = (0..Self::SLOTS)
            .map(|i| {
                let slot = Slot {
                    kind: attack_kind(i),
                    source: attack_source(i),
                    target,
                    tls: tls.clone(),
                    tally: tally.clone(),
                    tried: tried.clone(),
                    opening: opening.clone(),
                    stop: stop_rx.clone(),
                };
                tokio::spawn(slot.run())
            })
            .collect();
        Attack {
            stop,
            tasks,
            tally,
            tried,
            started: Instant::now(),
        }
    }

    /// Waits until every slot has made its first attempt, at most `patience`; whether they all
    /// did.
    async fn tried_all(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while self.tried.load(Ordering::Relaxed) < Self::SLOTS {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    fn count(&self, field: fn(&Tally) -> &AtomicU64) -> [u64; 3] {
        [0, 1, 2].map(|k| field(&self.tally[k]).load(Ordering::Relaxed))
    }

    /// "silent TCP 1024, silent TLS 2500, slowloris 200"
    fn by_kind(&self, field: fn(&Tally) -> &AtomicU64) -> String {
        let counts = self.count(field);
        KINDS
            .iter()
            .zip(counts)
            .map(|((_, name), n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for ((kind, name), k) in KINDS.iter().zip(0..) {
            let t: &Tally = &self.tally[k];
            debug_assert_eq!(*kind as usize, k);
            out.insert(
                (*name).to_owned(),
                json!({
                    "opened": t.opened.load(Ordering::Relaxed),
                    "openAtEnd": t.open.load(Ordering::Relaxed),
                    "closedByServer": t.closed.load(Ordering::Relaxed),
                    "failedToOpen": t.failed.load(Ordering::Relaxed),
                }),
            );
        }
        Value::Object(out)
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One round of the well-behaved load and what the server did meanwhile.
struct Round {
    outcome: Outcome,
    cpu_per_request: f64,
    /// Resident memory, sampled every 100 ms: the largest and the last sample.
    rss_peak: u64,
    rss_last: u64,
}

async fn round(
    server: &Server,
    sts: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    scenario: &Arc<Scenario>,
    connections: usize,
    duration: Duration,
) -> Result<Round, String> {
    let before = server.cpu();
    let load = tokio::spawn(load::run(
        sts,
        tls.clone(),
        scenario.clone(),
        connections,
        duration,
    ));
    let (mut rss_peak, mut rss_last) = (0, 0);
    while !load.is_finished() {
        rss_last = server.memory().0;
        rss_peak = rss_peak.max(rss_last);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcome = load.await.map_err(|e| e.to_string())??;
    let cpu_per_request = (server.cpu() - before).as_secs_f64() / outcome.requests.max(1) as f64;
    Ok(Round {
        outcome,
        cpu_per_request,
        rss_peak,
        rss_last,
    })
}

fn print_round(name: &str, r: &Round, versus: Option<&Round>) {
    let o = &r.outcome;
    let ratio = versus.map_or(String::new(), |p| {
        format!(
            "  {:.1} % of unattacked",
            o.per_second() / p.outcome.per_second() * 100.0
        )
    });
    let answered = |v: String| if o.requests > 0 { v } else { "-".to_owned() };
    println!(
        "  {:<10} {:>9.0} {:>9} {:>9} {:>12} {:>7} {:>9}{ratio}",
        name,
        o.per_second(),
        answered(format!("{:.2}", o.quantile_ms(0.5))),
        answered(format!("{:.2}", o.quantile_ms(0.99))),
        answered(format!("{:.1}", r.cpu_per_request * 1e6)),
        o.errors,
        o.connect_failures,
    );
}

fn round_json(connections: usize, name: &str, r: &Round) -> Value {
    let mut row = r
        .outcome
        .row(connections, name, r.cpu_per_request, "none", 0.0);
    if let Some(row) = row.as_object_mut() {
        row.remove("ceiling");
        row.remove("ceilingRequestsPerSecond");
        row.remove("ratio");
        row.insert("rssPeakBytes".into(), json!(r.rss_peak));
        row.insert("rssLastBytes".into(), json!(r.rss_last));
    }
    row
}

/// What the anonymous flood got back.
#[derive(Debug, Default)]
struct Flood {
    statuses: BTreeMap<u16, u64>,
    /// Requests with no answer (the connection failed under them).
    unanswered: u64,
    connect_failures: u64,
    elapsed: Duration,
}

/// `FLOOD` requests to issue a token without a key (even ones) or with a wrong key (odd ones).
async fn flood(
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
async fn audit_heads(data_dir: &Path) -> Result<BTreeMap<String, u64>, String> {
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
async fn audit_added(
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

/// Raises this process's soft limit on open files to the hard one if it is under `needed`;
/// the limit now, or why it cannot be enough.
fn raise_open_files(needed: u64) -> Result<u64, String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(soft);
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < needed {
        return Err(format!(
            "the hard limit on open files (RLIMIT_NOFILE) is {hard}, under the {needed} this attack needs; raise it (ulimit -Hn, or LimitNOFILE= in systemd) and run again"
        ));
    }
    let raised = limit.maximum.unwrap_or(needed);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        },
    )
    .map_err(|e| {
        format!("cannot raise the soft limit on open files from {soft} to {raised}: {e}")
    })?;
    Ok(raised)
}

/// The value of the metric line that starts with `name` (name and labels), if any.
fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// `latch_connections_closed_total` of the STS listener, by reason.
fn sts_closes(page: &str) -> BTreeMap<String, u64> {
    const PREFIX: &str = "latch_connections_closed_total{service=\"sts\",reason=\"";
    page.lines()
        .filter_map(|l| {
            let (reason, value) = l.strip_prefix(PREFIX)?.split_once("\"} ")?;
            Some((reason.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Runs the scenario against a new server started from `latch`; its report.
pub(crate) async fn bench(
    latch: &Path,
    connections: &[usize],
    duration: Duration,
) -> Result<Value, String> {
    let most = connections.iter().copied().max().unwrap_or(0);
    let needed = (Attack::SLOTS + most + FLOOD_CONNECTIONS + 256) as u64;
    let open_files = match raise_open_files(needed) {
        Ok(limit) => limit,
        Err(why) => {
            println!("\nhostile: skipped: {why}");
            return Ok(json!({ "skipped": why }));
        }
    };
    let mut server = Server::start(latch, None)?;
    let tls = Arc::new(crate::trust(
        &server.data_dir().join("tls").join("dev-cert.pem"),
    )?);
    let sts = crate::addr(&server.sts)?;
    let client = server.demo("CLIENT_RESOURCE_ID")?;
    let scenario = Arc::new(crate::issuance(&server.demo("ISV_KEY")?, &client));
    println!(
        "\nhostile: a server of its own (default connection bounds, rate limits lifted), ready in {} ms, {:.1} MB resident; this process may open {open_files} files",
        server.startup.as_millis(),
        server.memory().0 as f64 / 1e6,
    );

    // 1. Unattacked.
    let mut plain = Vec::new();
    for &n in connections {
        plain.push(round(&server, sts, &tls, &scenario, n, duration).await?);
    }

    // 2. The attack.
    let last_source = attack_source(Attack::SLOTS - 1);
    println!(
        "hostile: attack on the STS: {IDLE_PLAIN} silent TCP, {IDLE_TLS} silent TLS and {SLOWLORIS} slowloris (a header byte a second) connections from 127.0.0.2-{last_source}, at most {PER_ADDRESS} an address, each opened again {} s after the server closes it",
        REOPEN_AFTER.as_secs()
    );
    let closed_before = sts_closes(&server.metrics_page()?);
    let attack = Attack::start(sts, tls.clone());
    let all_tried = attack.tried_all(Duration::from_secs(60)).await;
    println!(
        "hostile: {} slots tried to connect in {:.1} s{}; open now: {}",
        attack.tried.load(Ordering::Relaxed),
        attack.started.elapsed().as_secs_f64(),
        if all_tried {
            ""
        } else {
            " (not all of them within 60 s)"
        },
        attack.by_kind(|t| &t.open),
    );
    tokio::time::sleep(ATTACK_WARM_UP).await;
    println!(
        "hostile: after {:.0} s of attack, open: {}; closed by the server so far: {}; failed to open: {}",
        attack.started.elapsed().as_secs_f64(),
        attack.by_kind(|t| &t.open),
        attack.by_kind(|t| &t.closed),
        attack.by_kind(|t| &t.failed),
    );

    // 3. Attacked.
    let mut attacked = Vec::new();
    for &n in connections {
        attacked.push(round(&server, sts, &tls, &scenario, n, duration).await?);
    }
    let page = server.metrics_page()?;
    let closed_by_server = sts_closes(&page);
    let server_closes = closed_by_server
        .iter()
        .map(|(why, n)| {
            (
                why.clone(),
                n - closed_before.get(why).copied().unwrap_or(0),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let server_open = metric(&page, "latch_connections_open{service=\"sts\"}");
    let attack_open = attack.by_kind(|t| &t.open);
    let attack_report = attack.json();
    let attack_line = format!(
        "hostile: the attack over {:.0} s: opened {}; closed by the server {}; failed to open {}; open at the end {attack_open}",
        attack.started.elapsed().as_secs_f64(),
        attack.by_kind(|t| &t.opened),
        attack.by_kind(|t| &t.closed),
        attack.by_kind(|t| &t.failed),
    );
    attack.stop().await;

    println!(
        "\n  {:<10} {:>9} {:>9} {:>9} {:>12} {:>7} {:>9}",
        "issuance", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors", "no conn"
    );
    let mut rows = Vec::new();
    for ((&n, p), a) in connections.iter().zip(&plain).zip(&attacked) {
        println!("  {n} connections:");
        print_round("unattacked", p, None);
        print_round("attacked", a, Some(p));
        rows.push(round_json(n, "unattacked", p));
        let mut row = round_json(n, "attacked", a);
        row["ratioToUnattacked"] = json!(a.outcome.per_second() / p.outcome.per_second());
        rows.push(row);
    }
    println!("{attack_line}");
    println!(
        "hostile: the STS listener, from its metrics: {} connections open at the end of the attack; closed during it: {}",
        server_open.map_or("?".to_owned(), |n| n.to_string()),
        server_closes
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rss_peak = attacked.iter().map(|r| r.rss_peak).max().unwrap_or(0);
    let rss_last = attacked.last().map_or(0, |r| r.rss_last);
    println!(
        "hostile: server memory during the attacked rounds: {:.1} MB resident at most (VmRSS every 100 ms), {:.1} MB at the end",
        rss_peak as f64 / 1e6,
        rss_last as f64 / 1e6
    );

    // 4. The anonymous flood, then a graceful stop and the records it left.
    let before = audit_heads(&server.data_dir()).await?;
    let body = Bytes::from(
        json!({"targetAzureResourceId": client, "featureFlags": ["Face.Identification"]})
            .to_string(),
    );
    let flooded = flood(sts, &tls, body).await?;
    let statuses = flooded
        .statuses
        .iter()
        .map(|(s, n)| format!("{s} x {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "hostile: flood of {FLOOD} issueLimitedAccessToken without a key or with a wrong one, {FLOOD_CONNECTIONS} connections from {FLOOD_ADDRESSES} addresses (127.0.1.1-{}), in {:.1} s ({:.0} req/s): {statuses}; unanswered {}, connections not made {}",
        ip_after(Ipv4Addr::new(127, 0, 1, 1), FLOOD_ADDRESSES - 1),
        flooded.elapsed.as_secs_f64(),
        FLOOD as f64 / flooded.elapsed.as_secs_f64(),
        flooded.unanswered,
        flooded.connect_failures,
    );
    let exit = tokio::task::block_in_place(|| server.stop(Duration::from_secs(60)));
    let (added, types, refusals) = audit_added(&server.data_dir(), &before).await?;
    let types_line = types
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let typed: u64 = types.values().sum();
    println!(
        "hostile: audit records added by the flood, the server stopped ({}): {added} ({}{types_line}); the refusals_counted records count {refusals} refusals",
        match &exit {
            Ok(status) => status.to_string(),
            Err(e) => e.clone(),
        },
        if typed < added {
            format!("of the first {typed}: ")
        } else {
            String::new()
        },
    );
    let log = server.log();
    let emfile = log.to_lowercase().contains("too many open files");

    // The targets.
    let worst_ratio = plain
        .iter()
        .zip(&attacked)
        .map(|(p, a)| a.outcome.per_second() / p.outcome.per_second())
        .fold(f64::INFINITY, f64::min);
    // No request at all has no p99 to meet the target with.
    let worst_p99 = attacked
        .iter()
        .map(|a| {
            if a.outcome.requests == 0 {
                f64::INFINITY
            } else {
                a.outcome.quantile_ms(0.99)
            }
        })
        .fold(0.0, f64::max);
    let failed: u64 = attacked.iter().map(|a| a.outcome.errors).sum();
    let per_count = |f: &dyn Fn(usize, &Round, &Round) -> String| {
        connections
            .iter()
            .zip(&plain)
            .zip(&attacked)
            .map(|((&n, p), a)| f(n, p, a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let targets = [
        (
            worst_ratio >= MIN_RATIO,
            format!(
                "attacked issuance throughput >= {:.0} % of unattacked: {}",
                MIN_RATIO * 100.0,
                per_count(&|n, p, a| format!(
                    "{:.1} % at {n} connections",
                    a.outcome.per_second() / p.outcome.per_second() * 100.0
                ))
            ),
        ),
        (
            worst_p99 < MAX_P99_MS,
            format!(
                "attacked issuance p99 < {MAX_P99_MS:.0} ms: {}",
                per_count(&|n, _, a| if a.outcome.requests == 0 {
                    format!("no request served at {n} connections")
                } else {
                    format!(
                        "{:.2} ms at {n} connections",
                        a.outcome.quantile_ms(0.99)
                    )
                })
            ),
        ),
        (
            failed == 0,
            format!(
                "no failed request under attack: {}",
                per_count(&|n, _, a| format!(
                    "{} at {n} connections ({} of them connections not made)",
                    a.outcome.errors, a.outcome.connect_failures
                ))
            ),
        ),
        (
            rss_peak > 0 && rss_peak < MAX_RSS_BYTES,
            format!(
                "server resident memory under attack < {} MB: {:.1} MB at most",
                MAX_RSS_BYTES / 1_000_000,
                rss_peak as f64 / 1e6
            ),
        ),
        (
            !emfile,
            format!(
                "no \"Too many open files\" in the server's log: {}",
                if emfile { "present" } else { "absent" }
            ),
        ),
        (
            added < MAX_FLOOD_RECORDS,
            format!(
                "{FLOOD} refused anonymous requests add < {MAX_FLOOD_RECORDS} audit records: {added}"
            ),
        ),
    ];
    println!("hostile targets:");
    for (ok, line) in &targets {
        println!("  {}  {line}", verdict(*ok));
    }
    exit?;

    Ok(json!({
        "openFilesLimit": open_files,
        "attack": {
            "silentTcp": IDLE_PLAIN,
            "silentTls": IDLE_TLS,
            "slowloris": SLOWLORIS,
            "perAddress": PER_ADDRESS,
            "reopenAfterSecs": REOPEN_AFTER.as_secs(),
            "warmUpSecs": ATTACK_WARM_UP.as_secs(),
            "connections": attack_report,
            "stsOpenAtEnd": server_open,
            "stsClosedByServer": server_closes,
        },
        "rounds": rows,
        "rssPeakBytes": rss_peak,
        "tooManyOpenFiles": emfile,
        "flood": {
            "requests": FLOOD,
            "statuses": flooded.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "unanswered": flooded.unanswered,
            "seconds": flooded.elapsed.as_secs_f64(),
            "auditRecordsAdded": added,
            "auditRecordTypes": types,
            "refusalsCounted": refusals,
        },
        "targets": targets.iter().map(|(ok, line)| json!({"pass": ok, "target": line})).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attack_has_its_counts_and_no_address_holds_too_many() {
        let mut kinds = [0usize; 3];
        let mut per_source: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for i in 0..Attack::SLOTS {
            kinds[attack_kind(i) as usize] += 1;
            *per_source.entry(attack_source(i)).or_default() += 1;
        }
        assert_eq!(kinds, [IDLE_PLAIN, IDLE_TLS, SLOWLORIS]);
        assert!(per_source.values().all(|&n| n <= PER_ADDRESS));
        assert!(!per_source.contains_key(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(attack_source(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        // Both idle kinds from the first address.
        assert_eq!(attack_kind(0), Kind::Plain);
        assert_eq!(attack_kind(1), Kind::Tls);
    }

    #[test]
    fn connection_metrics_are_read_for_the_sts_only() {
        let page = "latch_connections_open{service=\"sts\"} 4096\n\
            latch_connections_open{service=\"face\"} 3\n\
            latch_connections_closed_total{service=\"sts\",reason=\"shed\"} 12\n\
            latch_connections_closed_total{service=\"sts\",reason=\"idle\"} 0\n\
            latch_connections_closed_total{service=\"face\",reason=\"shed\"} 99\n";
        assert_eq!(
            metric(page, "latch_connections_open{service=\"sts\"}"),
            Some(4096)
        );
        assert_eq!(metric(page, "latch_nothing"), None);
        let closes = sts_closes(page);
        assert_eq!(closes.len(), 2);
        assert_eq!(closes["shed"], 12);
        assert_eq!(closes["idle"], 0);
    }

    #[test]
    fn the_slow_head_never_ends() {
        let head: Vec<u8> = (0..200).map(slow_byte).collect();
        let text = String::from_utf8(head).unwrap();
        assert!(text.starts_with("POST /sts/v1.0/issueLimitedAccessToken HTTP/1.1\r\n"));
        assert!(!text.contains("\r\n\r\n"));
        assert!(text.contains("\r\nX-Slow: a\r\nX-Slow: a\r\n"));
    }
}
