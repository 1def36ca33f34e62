//! The attack: connections that stay silent, or send a request head a byte a second, each
//! opened again after the server closes it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::{
    CONNECT_PATIENCE, IDLE_PLAIN, IDLE_TLS, OPENING, PER_ADDRESS, REOPEN_AFTER, SLOWLORIS,
};

/// The kinds of attack connection, in the order of [`Attack::tally`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct Tally {
    /// Connections made (TCP connected, and for TLS kinds the handshake done).
    pub(super) opened: AtomicU64,
    /// Open now, as far as this side knows.
    pub(super) open: AtomicU64,
    /// Closed by the server.
    pub(super) closed: AtomicU64,
    /// Attempts that failed: refused, reset, timed out, or the handshake failed.
    pub(super) failed: AtomicU64,
}

/// The source address of attack slot `i`.
pub(super) fn attack_source(i: usize) -> IpAddr {
    ip_after(Ipv4Addr::new(127, 0, 0, 2), i / PER_ADDRESS)
}

/// `base` plus `n` as a 32-bit number.
pub(super) fn ip_after(base: Ipv4Addr, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(base).wrapping_add(u32::try_from(n).unwrap_or(u32::MAX)),
    ))
}

/// The kind of attack slot `i`: silent TCP and silent TLS alternate (so every address has
/// both), the slow ones come last.
pub(super) fn attack_kind(i: usize) -> Kind {
    if i >= IDLE_PLAIN + IDLE_TLS {
        Kind::Slow
    } else if (i % 2 == 0 && i / 2 < IDLE_PLAIN) || i / 2 >= IDLE_TLS {
        Kind::Plain
    } else {
        Kind::Tls
    }
}

/// Byte `i` of a request head that never ends: a request line, then header lines forever.
pub(super) fn slow_byte(i: usize) -> u8 {
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
pub(super) async fn tls_from(
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
pub(super) struct Attack {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<[Tally; 3]>,
    pub(super) tried: Arc<AtomicUsize>,
    pub(super) started: Instant,
}

impl Attack {
    pub(super) const SLOTS: usize = IDLE_PLAIN + IDLE_TLS + SLOWLORIS;

    pub(super) fn start(target: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Attack {
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
    pub(super) async fn tried_all(&self, patience: Duration) -> bool {
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
    pub(super) fn by_kind(&self, field: fn(&Tally) -> &AtomicU64) -> String {
        let counts = self.count(field);
        KINDS
            .iter()
            .zip(counts)
            .map(|((_, name), n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn json(&self) -> Value {
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

    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
