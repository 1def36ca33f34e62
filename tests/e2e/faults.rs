//! Faults a deployed service meets, made real: a flood of idle and slow connections from many
//! addresses, a full disk, a database connection cut, and SIGTERM under load. The checks are
//! what a client or an auditor relies on: the well-behaved are served, the server's resources
//! stay bounded, no token is handed out without its audit record, and service resumes by
//! itself.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::database::Database;
use crate::harness::{jti, lat_body, tls_client, within, Alone, Http, Server};
use crate::tcp_proxy::TcpProxy;

/// The well-behaved client's address.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const ISSUE: &str = "/sts/v1.0/issueLimitedAccessToken";

/// Rate limits no test here should meet: the faults, not the limits, are under test.
const GENEROUS_LIMITS: &str = "\
[sts]
rate_limit_per_second = 10000.0
rate_limit_burst = 10000.0
address_rate_limit_per_second = 10000.0
address_rate_limit_burst = 10000.0

[face]
rate_limit_per_second = 10000.0
rate_limit_burst = 10000.0
";

/// A configuration file in a directory of its own, kept while the first value lives; its path.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latch.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// How many files process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether process `pid` has exited (gone, or a zombie its parent has not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Verifies audit chain `chain` from its first record.
async fn verify_chain(s: &Server, chain: &str) {
    let records = s
        .store()
        .await
        .audit_records(chain, 0, 1_000_000)
        .await
        .unwrap();
    latch_core::audit::verify_chain(
        chain,
        1,
        latch_core::audit::GENESIS,
        records.iter().map(|r| r.body.as_str()),
    )
    .unwrap_or_else(|e| panic!("audit chain {chain} does not verify: {e:?}"));
}

/// Asserts that every token in `tokens` has its issuance record.
async fn assert_recorded(s: &Server, tokens: &[String]) {
    let recorded = s.issued_jtis().await;
    let missing: Vec<String> = tokens
        .iter()
        .map(|t| jti(t))
        .filter(|j| !recorded.contains(j))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} tokens a client received have no issuance record: {missing:?}",
        missing.len(),
        tokens.len()
    );
}

/// A byte stream to a listener, over TLS or not.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One of the server's listeners, dialled as a client would: from a chosen loopback source
/// address, over TLS when its URL is https.
#[derive(Clone)]
struct Listener {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Listener {
    fn of(s: &Server, url: &str) -> Listener {
        let (tls, addr) = match url.strip_prefix("https://") {
            Some(addr) => (true, addr),
            None => (false, url.trim_start_matches("http://")),
        };
        Listener {
            addr: addr.parse().unwrap(),
            tls: tls.then(|| {
                Arc::new(tls_client(
                    s.cacert.as_deref().expect("the server's certificate"),
                ))
            }),
        }
    }

    /// A TCP connection from `source`, nothing sent.
    async fn tcp(&self, source: IpAddr) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.addr).await
    }

    /// A connection from `source` with its TLS handshake done, nothing sent.
    async fn open(&self, source: IpAddr) -> std::io::Result<Box<dyn Stream>> {
        let tcp = self.tcp(source).await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from(self.addr.ip().to_string())
                    .map_err(std::io::Error::other)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Ok(Box::new(tls))
            }
        }
    }

    /// Whether a new TCP connection is refused: the port is closed.
    async fn refuses(&self) -> bool {
        matches!(
            TcpStream::connect(self.addr).await,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    }
}

/// Reads until the peer closes (or resets) the connection; what arrived.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status of an HTTP answer's first line, if `bytes` begin with one.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let line = bytes.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(line.get(..3)?).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// 1. A flood of idle and slow connections.

const MAX_CONNECTIONS: usize = 64;
const MAX_PER_ADDRESS: usize = 16;
const HEADER_READ: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(3);
const BODY_READ: Duration = Duration::from_secs(2);
/// What a bound may be late by on a loaded two-core machine (the server looks at deadlines
/// every quarter of the shortest: 0.5 s here).
const SLACK: Duration = Duration::from_secs(2);
/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(10);
/// The longest the well-behaved client waits for one answer.
const PATIENCE: Duration = Duration::from_secs(5);

/// The flooding addresses: 127.0.0.2 to 127.0.0.9.
const ATTACKERS: std::ops::RangeInclusive<u8> = 2..=9;
const ATTACKER_COUNT: usize = (*ATTACKERS.end() - *ATTACKERS.start() + 1) as usize;
/// Per flooding address and listener: connections of each kind. Idle and slowloris connections
/// alone are over both bounds (24 + 4 > 16 from one address, 8 x 28 > 64 on a listener);
/// the slow bodies, which hold requests in progress, stay under them, so that room is left
/// for the well-behaved (a listener full of requests in progress refuses new connections by
/// design).
const IDLE_PER_ADDRESS: usize = 24;
const SLOWLORIS_PER_ADDRESS: usize = 4;
const RAW_TCP_PER_ADDRESS: usize = 2;
const SLOW_BODY_PER_ADDRESS: usize = 2;
/// How long a flooding slot waits before it connects again.
const RECONNECT: Duration = Duration::from_secs(2);

// The flood is over both bounds; the requests it holds in progress are under them.
const _: () = assert!(IDLE_PER_ADDRESS + SLOWLORIS_PER_ADDRESS > MAX_PER_ADDRESS);
const _: () =
    assert!(ATTACKER_COUNT * (IDLE_PER_ADDRESS + SLOWLORIS_PER_ADDRESS) > MAX_CONNECTIONS);
const _: () = assert!(ATTACKER_COUNT * SLOW_BODY_PER_ADDRESS < MAX_CONNECTIONS / 2);

/// The bounds above, as the server is configured.
fn flood_config() -> String {
    format!(
        "[server]\nmax_connections = {MAX_CONNECTIONS}\n\
         max_connections_per_address = {MAX_PER_ADDRESS}\n\
         header_read_timeout_secs = {}\nidle_timeout_secs = {}\nbody_read_timeout_secs = {}\n\n\
         {GENEROUS_LIMITS}",
        HEADER_READ.as_secs(),
        IDLE.as_secs(),
        BODY_READ.as_secs()
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// TLS handshake done, then nothing.
    Idle,
    /// TCP connected, no TLS handshake started: held by the TLS listener until its handshake
    /// timeout, which no setting of `[server]` names, so not bounded here beyond the count.
    RawTcp,
    /// Half a request's head, then a byte a second.
    Slowloris,
    /// A whole head announcing 1000 bytes of body, then a byte a second.
    SlowBody,
}

impl Attack {
    /// How soon the server must close such a connection (measured from the handshake, or from
    /// the first byte sent); `None`: not bounded here.
    fn bound(self) -> Option<Duration> {
        match self {
            Attack::Idle => Some(IDLE),
            Attack::Slowloris => Some(HEADER_READ),
            Attack::SlowBody => Some(BODY_READ),
            Attack::RawTcp => None,
        }
    }
}

/// How a flooding connection ended.
#[derive(Debug)]
struct Ended {
    attack: Attack,
    from: IpAddr,
    /// From the handshake (or the first byte sent) to the server's close.
    after: Duration,
    /// The status of an answer, if there was one.
    status: Option<u16>,
}

struct Flood {
    sts: Listener,
    face: Listener,
    /// The slow body's head: a request with a valid key (a slow client, or a stolen key) that
    /// the STS must read the body of.
    slow_body_head: Vec<u8>,
    until: Instant,
    ended: Mutex<Vec<Ended>>,
    /// Connections whose handshake completed.
    opened: AtomicUsize,
    /// Connections the server refused or dropped during the handshake.
    not_opened: AtomicUsize,
    /// Flooding connections open now, as the flood sees them.
    holding: AtomicUsize,
}

/// Counts one open flooding connection while it lives.
struct Holding<'a>(&'a AtomicUsize);

impl<'a> Holding<'a> {
    fn new(count: &'a AtomicUsize) -> Holding<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Holding(count)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Flood {
    /// Runs one kind of connection from `from` to `listener` again and again until the flood
    /// ends, starting after `delay`.
    async fn slot(self: Arc<Self>, attack: Attack, face: bool, from: IpAddr, delay: Duration) {
        tokio::time::sleep(delay).await;
        let listener = if face { &self.face } else { &self.sts };
        while Instant::now() < self.until {
            // A connection the server never closes is stopped at its bound plus the slack plus
            // a second, and then counts as over the bound.
            let limit = match attack.bound() {
                Some(bound) => bound + SLACK + Duration::from_secs(1),
                None => self.until.saturating_duration_since(Instant::now()),
            };
            let attempt = async {
                match attack {
                    Attack::RawTcp => {
                        let mut tcp = listener.tcp(from).await.ok()?;
                        let _held = Holding::new(&self.holding);
                        let start = Instant::now();
                        read_until_closed(&mut tcp).await;
                        Some((start.elapsed(), Vec::new()))
                    }
                    Attack::Idle => {
                        let mut stream = listener.open(from).await.ok()?;
                        let _held = Holding::new(&self.holding);
                        self.opened.fetch_add(1, Ordering::Relaxed);
                        let start = Instant::now();
                        let answer = read_until_closed(&mut stream).await;
                        Some((start.elapsed(), answer))
                    }
                    Attack::Slowloris => {
                        let stream = listener.open(from).await.ok()?;
                        let _held = Holding::new(&self.holding);
                        self.opened.fetch_add(1, Ordering::Relaxed);
                        let path = if face { "/face/v1.0/identify" } else { ISSUE };
                        let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
                        Some(trickle(stream, head.as_bytes()).await)
                    }
                    Attack::SlowBody => {
                        let stream = listener.open(from).await.ok()?;
                        let _held = Holding::new(&self.holding);
                        self.opened.fetch_add(1, Ordering::Relaxed);
                        Some(trickle(stream, &self.slow_body_head).await)
                    }
                }
            };
            let ended = match tokio::time::timeout(limit, attempt).await {
                Ok(Some((after, answer))) => Some(Ended {
                    attack,
                    from,
                    after,
                    status: status_of(&answer),
                }),
                Ok(None) => {
                    self.not_opened.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(_) => Some(Ended {
                    attack,
                    from,
                    after: limit,
                    status: None,
                }),
            };
            if let Some(ended) = ended.filter(|_| attack != Attack::RawTcp) {
                self.ended.lock().unwrap().push(ended);
            }
            if Instant::now() < self.until {
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

/// Sends `head`, then a byte a second, while reading what the server answers, until it
/// closes the connection: how long that took from the first byte sent, and the answer.
async fn trickle(stream: Box<dyn Stream>, head: &[u8]) -> (Duration, Vec<u8>) {
    let (mut read, mut write) = tokio::io::split(stream);
    let start = Instant::now();
    if write.write_all(head).await.is_err() || write.flush().await.is_err() {
        return (start.elapsed(), read_until_closed(&mut read).await);
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    let mut writing = true;
    loop {
        tokio::select! {
            got = read.read(&mut buf) => match got {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if writing => {
                // Once the server stops reading, only its answer (or its close) is awaited.
                writing = write.write_all(b"a").await.is_ok() && write.flush().await.is_ok();
            }
        }
    }
    (start.elapsed(), answer)
}

/// A user relies on this: while many addresses hold far more idle, half-sent and slow
/// connections than the bounds allow, a well-behaved device still gets its limited access
/// token and its identify answered, every time; the slow connections are cut at their
/// deadlines; and the server's file descriptors stay bounded, so it never runs out.
///
/// The device's call is a real identification: the built-in engine identifies the demo person
/// from the demo photo (detected once before the flood; the face id is good for a day).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_slow_connections_does_not_stop_a_well_behaved_client() {
    let models = latch_models::test_dir().expect("the engine's weights and photos");
    let models = models.to_string_lossy().into_owned();
    let (_config_dir, config) = config_file(&flood_config());
    // The flood takes both cores: no other test's server runs beside it.
    let alone = Alone::take();
    let s = alone
        .start_full(
            &["--config", &config],
            &[
                ("LATCH_FACE_ENGINE", "on"),
                ("LATCH_FACE_MODELS_DIR", &models),
            ],
        )
        .await;
    let d = s.demo.clone();
    let group = s.demo_value("DEMO_GROUP_ID");
    let person = s.demo_value("DEMO_PERSON_ID");

    // The device's face, detected once.
    let token = s.demo_token(&["Face.Identification"]).await;
    let lat = format!("Bearer {token}");
    let detected = s
        .client(&s.face_url)
        .send(
            "POST",
            "/face/v1.0/detect?returnFaceId=true",
            &[
                ("Ocp-Apim-Subscription-Key", d.client_key.as_str()),
                ("LimitedAccessToken", lat.as_str()),
                ("Content-Type", "application/octet-stream"),
            ],
            std::fs::read(s.demo_value("DEMO_PHOTO")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(detected.status, 200, "{}", detected.body);
    let face_id = detected.json()[0]["faceId"].as_str().unwrap().to_owned();
    let identify_body = format!(r#"{{"largePersonGroupId": "{group}", "faceIds": ["{face_id}"]}}"#);

    let pid = s.pid();
    let baseline = open_fds(pid);
    let flood = Arc::new(Flood {
        sts: Listener::of(&s, &s.url),
        face: Listener::of(&s, &s.face_url),
        slow_body_head: format!(
            "POST {ISSUE} HTTP/1.1\r\nHost: localhost\r\nOcp-Apim-Subscription-Key: {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
            d.isv_key2
        )
        .into_bytes(),
        until: Instant::now() + FLOOD,
        ended: Mutex::new(Vec::new()),
        opened: AtomicUsize::new(0),
        not_opened: AtomicUsize::new(0),
        holding: AtomicUsize::new(0),
    });
    let mut slots = tokio::task::JoinSet::new();
    let mix = [
        (Attack::Idle, IDLE_PER_ADDRESS),
        (Attack::Slowloris, SLOWLORIS_PER_ADDRESS),
        (Attack::RawTcp, RAW_TCP_PER_ADDRESS),
        (Attack::SlowBody, SLOW_BODY_PER_ADDRESS),
    ];
    let mut n = 0u64;
    for last in ATTACKERS {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        for face in [false, true] {
            for (attack, count) in mix {
                // The slow bodies go to the STS, whose issuance reads the body.
                if face && attack == Attack::SlowBody {
                    continue;
                }
                for _ in 0..count {
                    // The flood ramps up over its first two seconds.
                    let delay = Duration::from_millis(n * 7919 % 2000);
                    slots.spawn(flood.clone().slot(attack, face, from, delay));
                    n += 1;
                }
            }
        }
    }
    let raw_tcp = ATTACKER_COUNT * 2 * RAW_TCP_PER_ADDRESS;

    // The server's open files, sampled until the flood is over, with the flood's connections
    // open at that moment.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (sampling, flood) = (sampling.clone(), flood.clone());
        tokio::spawn(async move {
            let mut most = (0, 0);
            while sampling.load(Ordering::Relaxed) {
                let fds = open_fds(pid);
                if fds > most.0 {
                    most = (fds, flood.holding.load(Ordering::Relaxed));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            most
        })
    };

    // The well-behaved device: a new connection for each call, a new token for each identify,
    // ten rounds a second.
    let mut rounds = 0;
    let mut slowest = Duration::ZERO;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < flood.until {
        pace.tick().await;
        let call = async |url: &str, path: &str, headers: &[(&str, &str)], body: &str| {
            let started = Instant::now();
            let answer = tokio::time::timeout(
                PATIENCE,
                Http::trusting(url, s.cacert.as_deref()).try_request("POST", path, headers, body),
            )
            .await
            .unwrap_or_else(|_| panic!("round {rounds}: {path} not answered within {PATIENCE:?}"))
            .unwrap_or_else(|| panic!("round {rounds}: {path}: no answer (connection closed)"));
            (answer, started.elapsed())
        };
        let (issued, took) = call(
            &s.url,
            ISSUE,
            &[
                ("Ocp-Apim-Subscription-Key", &d.isv_key),
                ("content-type", "application/json"),
            ],
            &lat_body(&d.client_id, &["Face.Identification"]),
        )
        .await;
        assert_eq!(issued.status, 200, "round {rounds}: {}", issued.body);
        s.secret(&issued.body);
        slowest = slowest.max(took);
        let lat = format!("Bearer {}", issued.body);
        let (identified, took) = call(
            &s.face_url,
            "/face/v1.0/identify",
            &[
                ("Ocp-Apim-Subscription-Key", &d.client_key),
                ("LimitedAccessToken", &lat),
                ("Content-Type", "application/json"),
            ],
            &identify_body,
        )
        .await;
        assert_eq!(
            identified.status, 200,
            "round {rounds}: {}",
            identified.body
        );
        assert_eq!(
            identified.json()[0]["candidates"][0]["personId"],
            person.as_str(),
            "round {rounds}: the demo person identified"
        );
        slowest = slowest.max(took);
        rounds += 1;
    }
    while slots.join_next().await.is_some() {}
    sampling.store(false, Ordering::Relaxed);
    let (most_fds, flood_open_then) = sampler.await.unwrap();

    let ended = std::mem::take(&mut *flood.ended.lock().unwrap());
    let count = |attack| ended.iter().filter(|e| e.attack == attack).count();
    eprintln!(
        "flood: {} connections opened ({} refused or dropped in the handshake), {} idle, {} \
         slowloris, {} slow bodies ended ({} answered 408); the device made {rounds} rounds, \
         slowest call {slowest:?}; the server's open files: {baseline} before, at most \
         {most_fds} during (when the flood had {flood_open_then} connections open)",
        flood.opened.load(Ordering::Relaxed),
        flood.not_opened.load(Ordering::Relaxed),
        count(Attack::Idle),
        count(Attack::Slowloris),
        count(Attack::SlowBody),
        ended.iter().filter(|e| e.status == Some(408)).count(),
    );
    assert!(rounds >= 5, "the device made only {rounds} rounds");
    // Every bound is checked, and every breach reported together.
    let mut problems = Vec::new();
    for attack in [Attack::Idle, Attack::Slowloris, Attack::SlowBody] {
        let bound = attack.bound().unwrap() + SLACK;
        let of_kind: Vec<&Ended> = ended.iter().filter(|e| e.attack == attack).collect();
        if of_kind.is_empty() {
            problems.push(format!("no {attack:?} connection ended"));
            continue;
        }
        let over: Vec<&&Ended> = of_kind.iter().filter(|e| e.after > bound).collect();
        if let Some(worst) = over.iter().max_by_key(|e| e.after) {
            problems.push(format!(
                "{} of {} {attack:?} connections were held over {bound:?}: the longest {:?} \
                 (from {}; the test stops waiting at its bound plus a second)",
                over.len(),
                of_kind.len(),
                worst.after,
                worst.from
            ));
        }
        // A slow body is answered 408 or cut; a connection that never sent a whole request
        // gets no answer but an error.
        let wrong: Vec<Option<u16>> = of_kind
            .iter()
            .filter(|e| match attack {
                Attack::SlowBody => !matches!(e.status, None | Some(408)),
                _ => e.status.is_some_and(|s| s < 400),
            })
            .map(|e| e.status)
            .collect();
        if !wrong.is_empty() {
            problems.push(format!("{attack:?} connections answered {wrong:?}"));
        }
    }
    // Established connections are bounded per listener; handshakes in progress are the raw TCP
    // connections (held for the whole flood) and a few of the flood's reconnections.
    let bound = baseline + 2 * (MAX_CONNECTIONS + 32) + raw_tcp;
    if most_fds > bound {
        problems.push(format!(
            "the server held {most_fds} files, over {bound} ({baseline} before the flood, \
             {flood_open_then} flooding connections open then)"
        ));
    }
    let stderr = s.stderr();
    if stderr.contains("Too many open files") || stderr.contains("os error 24") {
        problems.push("the server ran out of file descriptors".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    s.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 2. A full disk.

/// A tmpfs mounted over a directory for one test; unmounted however the test ends, and then the
/// directory's parent (the harness's folder for the server) removed with what it hid.
struct Tmpfs {
    point: PathBuf,
    parent: PathBuf,
}

impl Tmpfs {
    fn mount(point: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("latch-e2e-disk")
            .arg(point)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs {
            point: point.to_owned(),
            parent: point.parent().unwrap().to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.point)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still in use (a server the test did not stop): detached now, freed when it exits.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.point)
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}

/// Fills the filesystem that holds `path` with the file `path`; its size.
fn fill(path: &Path) -> usize {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for chunk in [1 << 20, 4096] {
        let zeros = vec![0u8; chunk];
        loop {
            match file.write(&zeros) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    written
}

/// One issuance attempt and its answer.
struct Attempt {
    sent: Instant,
    answered: Instant,
    /// `None`: no answer (connection closed, or not within the client's patience).
    status: Option<u16>,
    body: String,
}

/// Issues tokens with `http` one after the other until `stop`, noting each attempt.
async fn issue_until(
    http: &Http,
    key: &str,
    body: &str,
    stop: &AtomicBool,
    attempts: &Mutex<Vec<Attempt>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            http.try_request(
                "POST",
                ISSUE,
                &[
                    ("Ocp-Apim-Subscription-Key", key),
                    ("content-type", "application/json"),
                ],
                body,
            ),
        )
        .await
        .ok()
        .flatten();
        attempts.lock().unwrap().push(Attempt {
            sent,
            answered: Instant::now(),
            status: answer.as_ref().map(|a| a.status.as_u16()),
            body: answer.map(|a| a.body).unwrap_or_default(),
        });
    }
}

/// Tokens answered 200 in `attempts`.
fn tokens(attempts: &[Attempt]) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a.status == Some(200))
        .map(|a| a.body.clone())
        .collect()
}

/// Every attempt was answered, 200 or 503, and no 503 carries a token.
fn assert_answered_200_or_503(attempts: &[Attempt]) {
    for a in attempts {
        assert!(
            matches!(a.status, Some(200 | 503)),
            "an issuance answered {:?} after {:?}: {}",
            a.status,
            a.answered - a.sent,
            a.body
        );
        if a.status == Some(503) {
            assert!(!a.body.contains("eyJ"), "a 503 carried a token: {}", a.body);
        }
    }
}

/// A user relies on this: when the disk under the audit log is full, the STS refuses (503)
/// rather than hand out a token it cannot record; once space is freed it issues again by
/// itself, with no restart; and every token it did hand out has its issuance record in a chain
/// that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_loses_nothing_acknowledged_and_recovers_by_itself() {
    if crate::database::embedded_only(
        "a_full_disk_answers_503_loses_nothing_acknowledged_and_recovers_by_itself",
        "a data directory on a small disk",
    ) {
        return;
    }
    // The audit journal writes into segments made (and filled with zeros) ahead of use: a full
    // disk refuses records once the open segment is used up. Small segments get there soon.
    let (_config_dir, config) = config_file(&format!(
        "{GENEROUS_LIMITS}\n[audit]\njournal_segment_mib = 1\n"
    ));
    // The harness picks the server's folder; a first run makes it, and the small filesystem is
    // mounted on its data directory before the server that is tested starts there (with a new
    // store: the first one is hidden under the mount). The server's log stays on the ordinary
    // disk, so it can say what failed.
    let first = Server::start_with(&["--config", &config]).await;
    first.signal("-TERM");
    within(
        Duration::from_secs(20),
        "the first run stopped",
        async || first.stderr().contains("every audit record is committed"),
    )
    .await;
    let _disk = match Tmpfs::mount(&first.data_dir(), "16m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_answers_503_loses_nothing_acknowledged_and_recovers_by_itself: \
                 cannot mount a tmpfs ({why}); run as root"
            );
            return;
        }
    };
    let s = first.restart_with(&["--config", &config]).await;
    let d = s.demo.clone();
    let body = lat_body(&d.client_id, &["Face.Identification"]);
    let filler = s.data_dir().join("filler");

    let stop = AtomicBool::new(false);
    let attempts = Mutex::new(Vec::new());
    let http = s.client(&s.url);
    let load = issue_until(&http, &d.isv_key, &body, &stop, &attempts);
    let faults = async {
        let ok_after = |from: usize| {
            let attempts = &attempts;
            move || {
                attempts.lock().unwrap()[from..]
                    .iter()
                    .filter(|a| a.status == Some(200))
                    .count()
            }
        };
        within(
            Duration::from_secs(10),
            "tokens before the disk fills",
            async || ok_after(0)() >= 5,
        )
        .await;

        let full_from = attempts.lock().unwrap().len();
        let filled = fill(&filler);
        let took = within(
            Duration::from_secs(15),
            "a 503 once the disk is full",
            async || {
                attempts.lock().unwrap()[full_from..]
                    .iter()
                    .any(|a| a.status == Some(503))
            },
        )
        .await;
        eprintln!("disk filled ({filled} bytes): first 503 after {took:?}");
        // Refused while full, and a few refusals in a row rather than one.
        within(
            Duration::from_secs(10),
            "503s while the disk is full",
            async || {
                let attempts = attempts.lock().unwrap();
                attempts[attempts.len().saturating_sub(3)..]
                    .iter()
                    .all(|a| a.status == Some(503))
            },
        )
        .await;

        std::fs::remove_file(&filler).unwrap();
        let freed_from = attempts.lock().unwrap().len();
        let took = within(
            Duration::from_secs(10),
            "tokens again once the disk has room",
            async || ok_after(freed_from)() >= 3,
        )
        .await;
        eprintln!("space freed: issuing again after {took:?}");
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(load, faults);

    let attempts = attempts.into_inner().unwrap();
    assert_answered_200_or_503(&attempts);
    let issued = tokens(&attempts);
    for t in &issued {
        s.secret(t);
    }
    eprintln!(
        "{} issuance attempts: {} tokens, {} refused",
        attempts.len(),
        issued.len(),
        attempts.len() - issued.len()
    );
    assert_recorded(&s, &issued).await;
    verify_chain(&s, "main").await;
    s.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 3. The database connection cut.

/// A user relies on this: when the network to the database is cut under load, the STS
/// refuses (503) rather than issue a token it cannot record, and answers every request; when
/// the network comes back it issues again within seconds, by itself (its pool reconnects);
/// and every token it handed out has its issuance record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_connection_fails_closed_and_recovers_without_restart() {
    let schema = Database::new().await;
    let proxy = TcpProxy::start(schema.address()).await;
    let url = schema.url_through(proxy.addr());
    let (_config_dir, config) = config_file(GENEROUS_LIMITS);
    let s = Server::start_full(
        &["--config", &config],
        &[
            ("LATCH_DATABASE_URL", &url),
            ("LATCH_AUDIT_CHAIN", "faults-db"),
        ],
    )
    .await;
    let d = s.demo.clone();
    let body = lat_body(&d.client_id, &["Face.Identification"]);

    let stop = AtomicBool::new(false);
    let attempts = Mutex::new(Vec::new());
    // Four issuers, each on its own keep-alive connection.
    let clients: Vec<Http> = (0..4).map(|_| s.client(&s.url)).collect();
    let issuer = |http| issue_until(http, &d.isv_key, &body, &stop, &attempts);
    let count_since = |since: Instant, status: u16| {
        attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent >= since && a.status == Some(status))
            .count()
    };
    let faults = async {
        let start = Instant::now();
        within(
            Duration::from_secs(10),
            "tokens before the cut",
            async || count_since(start, 200) >= 20,
        )
        .await;
        let accepted_before = proxy.accepted();
        proxy.cut().await;
        let cut = Instant::now();
        let took = within(
            Duration::from_secs(10),
            "503s while the database is cut",
            async || count_since(cut, 503) >= 8,
        )
        .await;
        eprintln!("database cut: 8 refusals within {took:?}");
        let restored = Instant::now();
        proxy.restore().await;
        let took = within(
            Duration::from_secs(10),
            "tokens again once the database is reachable",
            async || count_since(restored, 200) >= 10,
        )
        .await;
        eprintln!("database restored: issuing again within {took:?}");
        stop.store(true, Ordering::Relaxed);
        (cut, restored, proxy.accepted() - accepted_before)
    };
    let (.., (cut, restored, reconnections)) = tokio::join!(
        issuer(&clients[0]),
        issuer(&clients[1]),
        issuer(&clients[2]),
        issuer(&clients[3]),
        faults
    );

    let attempts = attempts.into_inner().unwrap();
    assert_answered_200_or_503(&attempts);
    for a in attempts
        .iter()
        .filter(|a| a.sent >= cut && a.answered <= restored)
    {
        assert_eq!(
            a.status,
            Some(503),
            "a request made and answered while the database was cut: {}",
            a.body
        );
    }
    assert!(reconnections > 0, "the server reconnected to the database");
    let issued = tokens(&attempts);
    for t in &issued {
        s.secret(t);
    }
    eprintln!(
        "{} issuance attempts: {} tokens, {} refused; {reconnections} new database connections",
        attempts.len(),
        issued.len(),
        attempts.len() - issued.len()
    );
    assert_recorded(&s, &issued).await;
    verify_chain(&s, "faults-db").await;
    s.finish().await;
    schema.drop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM under load.

/// An `issueLimitedAccessToken` request, as bytes, for a keep-alive connection.
fn issue_request(key: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {ISSUE} HTTP/1.1\r\nHost: localhost\r\nOcp-Apim-Subscription-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How one request went.
#[derive(Debug)]
enum Exchange {
    /// A whole answer; whether the server keeps the connection open after it.
    Answered {
        status: u16,
        body: String,
        keep_alive: bool,
    },
    /// The port refused a new connection: the listener is closed.
    Refused,
    /// The connection closed before any byte of an answer: a new connection's handshake, or a
    /// request the server had not read yet, dropped as the server stopped.
    Unanswered(String),
    /// An answer began and was cut off.
    Truncated(String),
    /// No answer and no close within the client's patience.
    Hung,
}

/// The whole answer at the start of `bytes`, or `None` if it is not all there yet.
fn whole_answer(bytes: &[u8]) -> Option<Exchange> {
    let status = status_of(bytes)?;
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    let body = bytes.get(end + 4..end + 4 + length)?;
    Some(Exchange::Answered {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
        keep_alive: !head.lines().any(|l| l == "connection: close"),
    })
}

/// Sends `request` on a client's keep-alive `connection` (a new one to `listener` if it has
/// none) and reads the answer; the connection is kept for the next request if the server
/// keeps it.
async fn exchange(
    connection: &mut Option<Box<dyn Stream>>,
    listener: &Listener,
    request: &[u8],
) -> Exchange {
    let attempt = async {
        if connection.is_none() {
            match listener.open(LOCAL).await {
                Ok(stream) => *connection = Some(stream),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Exchange::Refused
                }
                Err(e) => return Exchange::Unanswered(format!("handshake: {e}")),
            }
        }
        let stream = connection.as_mut().unwrap();
        if let Err(e) = stream.write_all(request).await {
            return Exchange::Unanswered(format!("sending: {e}"));
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(whole) = whole_answer(&answer) {
                return whole;
            }
            let why = match stream.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    answer.extend_from_slice(&buf[..n]);
                    continue;
                }
                Ok(_) => "closed".to_owned(),
                Err(e) => format!("reading: {e}"),
            };
            return if answer.is_empty() {
                Exchange::Unanswered(why)
            } else {
                Exchange::Truncated(String::from_utf8_lossy(&answer).into_owned())
            };
        }
    };
    let exchange = tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .unwrap_or(Exchange::Hung);
    if !matches!(
        exchange,
        Exchange::Answered {
            keep_alive: true,
            ..
        }
    ) {
        *connection = None;
    }
    exchange
}

/// A user relies on this: a deployment that stops the service (SIGTERM) while clients are
/// being served loses none of them: every answer a client got is whole and a 200, the
/// listeners close at once so clients go elsewhere, the process exits 0 after committing
/// every audit record, and every token a client received has its record, and no record is of
/// a token that no client received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_drains_the_audit_writer() {
    let (_config_dir, config) = config_file(GENEROUS_LIMITS);
    let s = Server::start_with(&["--config", &config]).await;
    let d = s.demo.clone();
    let pid = s.pid();
    let sts = Listener::of(&s, &s.url);
    let request = Arc::new(issue_request(
        &d.isv_key,
        &lat_body(&d.client_id, &["Face.Identification"]),
    ));
    let exchanges = Arc::new(Mutex::new(Vec::<(Instant, Instant, Exchange)>::new()));
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (sts, request, exchanges) = (sts.clone(), request.clone(), exchanges.clone());
        load.spawn(async move {
            // One keep-alive connection at a time, until a new one is refused: the listener
            // has closed.
            let mut connection = None;
            while Instant::now() < give_up {
                let sent = Instant::now();
                let exchange = exchange(&mut connection, &sts, &request).await;
                let refused = matches!(exchange, Exchange::Refused);
                exchanges
                    .lock()
                    .unwrap()
                    .push((sent, Instant::now(), exchange));
                if refused {
                    break;
                }
            }
        });
    }
    let answered_200 = || {
        exchanges
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, e)| matches!(e, Exchange::Answered { status: 200, .. }))
            .count()
    };
    within(Duration::from_secs(10), "tokens under load", async || {
        answered_200() >= 100
    })
    .await;

    let term = Instant::now();
    s.signal("-TERM");
    let listeners = [&s.url, &s.face_url, &s.admin_url].map(|url| Listener::of(&s, url));
    let took = within(
        Duration::from_secs(3),
        "every listener refuses new connections after SIGTERM",
        async || {
            for l in &listeners {
                if !l.refuses().await {
                    return false;
                }
            }
            true
        },
    )
    .await;
    eprintln!("SIGTERM: every listener refusing after {took:?}");
    while load.join_next().await.is_some() {}
    within(Duration::from_secs(20), "the server exits", async || {
        exited(pid)
    })
    .await;
    eprintln!("SIGTERM: exited after {:?}", term.elapsed());

    let exchanges = std::mem::take(&mut *exchanges.lock().unwrap());
    let mut received = Vec::new();
    let mut unanswered = std::collections::BTreeMap::<&str, usize>::new();
    let mut finished_across_the_signal = 0;
    for (sent, ended, exchange) in &exchanges {
        match exchange {
            Exchange::Answered {
                status: 200, body, ..
            } => {
                received.push(body.clone());
                if *sent < term && *ended > term {
                    finished_across_the_signal += 1;
                }
            }
            Exchange::Answered { status, body, .. } => {
                panic!("an answer other than 200 while stopping: {status} {body}")
            }
            Exchange::Truncated(partial) => panic!("an answer cut mid-response: {partial}"),
            Exchange::Hung => panic!("a request neither answered nor closed within 15 s"),
            Exchange::Refused | Exchange::Unanswered(_) => {
                assert!(
                    *ended >= term,
                    "refused or dropped before SIGTERM ({:?} before): {exchange:?}",
                    term - *sent
                );
                if let Exchange::Unanswered(why) = exchange {
                    *unanswered.entry(why).or_default() += 1;
                }
            }
        }
    }
    for t in &received {
        s.secret(t);
    }
    eprintln!(
        "SIGTERM under load: {} requests, {} tokens received ({finished_across_the_signal} \
         answered after the signal); closed before an answer as the listener closed: \
         {unanswered:?}",
        exchanges.len(),
        received.len()
    );
    assert!(
        finished_across_the_signal > 0,
        "no request was in flight at the signal: the test proved nothing"
    );

    // The store, reopened after the exit: the records are exactly the tokens received.
    let recorded = s.issued_jtis().await;
    let received_jtis: BTreeSet<String> = received.iter().map(|t| jti(t)).collect();
    let lost: Vec<_> = received_jtis.difference(&recorded).collect();
    assert!(lost.is_empty(), "tokens received with no record: {lost:?}");
    let unreceived: Vec<_> = recorded.difference(&received_jtis).collect();
    assert!(
        unreceived.is_empty(),
        "records of tokens no client received (a request dropped after it was served): \
         {unreceived:?}"
    );
    verify_chain(&s, "main").await;
    // Exit status 0 and "every audit record is committed" on stderr; no secret in any log.
    s.finish().await;
}
