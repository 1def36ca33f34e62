//! Serving a router on a listener, with the discipline a service on the internet needs.
//!
//! Every listener (STS, Face front, admin API, metrics) is served by [`serve`], which bounds
//! what one client can hold:
//!
//! * **Silent and idle connections.** A connection with no request in progress, that has not
//!   sent the first byte of its next request, is closed after [`ConnectionLimits::idle_timeout`]
//!   (counted from its accept, or from its last response).
//! * **Slow headers** (slowloris). Once the first byte of a request has arrived, the whole head
//!   must arrive within [`ConnectionLimits::header_read_timeout`]; otherwise the connection is
//!   cut, with no answer.
//! * **Slow bodies.** A request's body must arrive within
//!   [`ConnectionLimits::body_read_timeout`] of its head; otherwise it is answered 408 and the
//!   connection closed.
//! * **Slow requests.** Where [`ConnectionLimits::request_timeout`] is set (the STS and the admin
//!   API), a request that has no answer by then is answered 503 (408 if its body was still
//!   arriving).
//! * **Connection counts.** At most [`ConnectionLimits::max_connections`] established
//!   connections on the listener, and [`ConnectionLimits::max_per_address`] from one client
//!   address (an IPv6 client counts by its /64). A connection over either bound sheds an idle
//!   connection in its scope (at the listener's bound, of the address holding the most; then
//!   one never answered first, then the one idle longest; one that has sent part of a head is
//!   cut, the others closed), so an idle flood gives way to callers that are working; when
//!   nothing in scope is idle, the new connection is closed. The listener
//!   never stops accepting, so the kernel's queue never fills with connections no one reads.
//!
//! One task per listener watches every connection's deadlines a few times a second; requests
//! carry no timer of their own, only a few relaxed atomic stores. Connections are HTTP/1.1 with
//! keep-alive.
//!
//! When `shutdown` resolves the listener closes at once; each connection finishes the request it
//! is serving (within [`ConnectionLimits::drain_timeout`]) and closes; [`serve`] returns when the
//! last one has.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};

/// What one listener allows its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its head.
    pub header_read_timeout: Duration,
    /// How long a connection may wait, with no request in progress, before it sends the first
    /// byte of its next request.
    pub idle_timeout: Duration,
    /// From a request's head to the end of its body.
    pub body_read_timeout: Duration,
    /// From a request's head to its answer; `None` leaves it to the service.
    pub request_timeout: Option<Duration>,
    /// Established connections on this listener.
    pub max_connections: usize,
    /// Established connections from one client address (IPv6: one /64).
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            request_timeout: None,
            max_connections: 4096,
            max_per_address: 256,
        }
    }
}

impl ConnectionLimits {
    /// How long a connection has, once shutdown starts, to finish the request it is serving:
    /// the request timeout, or where the service bounds its requests itself, a minute (or the
    /// body timeout, if longer).
    pub fn drain_timeout(&self) -> Duration {
        self.request_timeout
            .unwrap_or(Duration::from_secs(60).max(self.body_read_timeout))
    }

    /// How often the deadlines are looked at: a quarter of the shortest, between 50 ms and 1 s.
    fn tick(&self) -> Duration {
        let shortest = [
            Some(self.header_read_timeout),
            Some(self.idle_timeout),
            Some(self.body_read_timeout),
            self.request_timeout,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(4));
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// What a listener's connections have done, for the metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub shed: AtomicU64,
    /// New connections closed at once: over a bound with nothing idle to shed.
    pub refused: AtomicU64,
    /// Connections closed after their idle timeout.
    pub idle_closed: AtomicU64,
    /// Connections cut because a request's head was too slow.
    pub header_timeouts: AtomicU64,
    /// Requests answered 408 because their body was too slow.
    pub body_timeouts: AtomicU64,
    /// Requests answered 503 (or 408) at the request timeout.
    pub request_timeouts: AtomicU64,
}

impl ConnectionStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The key a client address is counted by: itself for IPv4, its /64 for IPv6 (one host holds
/// a whole /64), and an IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What the watcher asks of a connection.
const ACT_NONE: u8 = 0;
/// Close once the request in progress, if any, is answered.
const ACT_CLOSE: u8 = 1;
/// Drop the connection now, with no answer.
const ACT_CUT: u8 = 2;

/// No time recorded.
const NEVER: u64 = u64::MAX;

/// One connection's state, shared by its task, its requests, its reads and the watcher. Times
/// are milliseconds since the listener started.
#[derive(Debug)]
struct Conn {
    id: u64,
    key: IpAddr,
    /// Requests being served (0 or 1 on HTTP/1.1).
    in_flight: AtomicU32,
    /// Whether it has been answered at least once.
    served: AtomicBool,
    /// When the connection last became idle: accepted, or its last answer produced.
    idle_since: AtomicU64,
    /// When the first byte after `idle_since` arrived, or `NEVER`.
    first_byte: AtomicU64,
    /// When the first byte of a next request arrived while this one was being answered (its
    /// body read), or `NEVER`: a pipelined head, timed from then.
    early_byte: AtomicU64,
    /// When the request in progress arrived.
    request_start: AtomicU64,
    /// Whether its body has been read to the end.
    body_done: AtomicBool,
    /// What the watcher asks: one of the `ACT_` values.
    action: AtomicU8,
    /// Wakes the connection's task for `action`.
    wake: Notify,
    /// Wakes the request in progress: its body or its answer is late.
    late: Notify,
}

impl Conn {
    fn ask(&self, action: u8) {
        // A cut wins over a close; a close asked twice is asked once.
        if self.action.fetch_max(action, Ordering::AcqRel) < action {
            self.wake.notify_one();
        }
    }

    fn closing(&self) -> bool {
        self.action.load(Ordering::Acquire) != ACT_NONE
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

#[derive(Debug, Default)]
struct Registry {
    conns: HashMap<u64, Arc<Conn>>,
    /// Connections per address key, and how many of them are already closing.
    per_key: HashMap<IpAddr, (usize, usize)>,
    /// Connections closing (asked to close, not yet gone).
    closing: usize,
    next_id: u64,
}

/// The connections of one listener.
#[derive(Debug)]
struct Connections {
    limits: ConnectionLimits,
    started: Instant,
    registry: Mutex<Registry>,
    stats: Arc<ConnectionStats>,
    /// Told when the last connection is gone.
    drained: Notify,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Admits a new connection from `peer`, shedding the longest-idle connection of a scope
    /// that is full; `None` if a scope is full of busy connections.
    fn admit(&self, peer: SocketAddr) -> Option<Arc<Conn>> {
        let key = address_key(peer.ip());
        let now = self.now_ms();
        let mut reg = self.lock();
        let (from_key, closing_of_key) = reg.per_key.get(&key).copied().unwrap_or((0, 0));
        if from_key - closing_of_key >= self.limits.max_per_address
            && !self.shed(&mut reg, Some(key))
        {
            ConnectionStats::bump(&self.stats.refused);
            return None;
        }
        if reg.conns.len() - reg.closing >= self.limits.max_connections
            && !self.shed_from_the_busiest(&mut reg)
        {
            ConnectionStats::bump(&self.stats.refused);
            return None;
        }
        reg.next_id += 1;
        let conn = Arc::new(Conn {
            id: reg.next_id,
            key,
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            first_byte: AtomicU64::new(NEVER),
            early_byte: AtomicU64::new(NEVER),
            request_start: AtomicU64::new(now),
            body_done: AtomicBool::new(true),
            action: AtomicU8::new(ACT_NONE),
            wake: Notify::new(),
            late: Notify::new(),
        });
        reg.conns.insert(conn.id, conn.clone());
        reg.per_key.entry(key).or_default().0 += 1;
        ConnectionStats::bump(&self.stats.accepted);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Some(conn)
    }

    /// Asks an idle connection (of `key`, or of all) to close; false if none is idle. One that
    /// has never been answered goes first (a flood opens connections and sends nothing, or
    /// never finishes a head), then one that has been idle longest.
    fn shed(&self, reg: &mut Registry, key: Option<IpAddr>) -> bool {
        let victim = reg
            .conns
            .values()
            .filter(|c| key.is_none_or(|k| c.key == k) && c.idle() && !c.closing())
            .min_by_key(|c| {
                (
                    c.served.load(Ordering::Relaxed),
                    c.idle_since.load(Ordering::Relaxed),
                    // Within a millisecond, the older connection.
                    c.id,
                )
            })
            .cloned();
        let Some(victim) = victim else {
            return false;
        };
        Self::mark_closing(reg, &victim);
        // One that has sent part of a head would wait for the rest of it: cut it.
        victim.ask(if victim.first_byte.load(Ordering::Acquire) == NEVER {
            ACT_CLOSE
        } else {
            ACT_CUT
        });
        ConnectionStats::bump(&self.stats.shed);
        true
    }

    /// At the listener's bound: sheds from the address holding the most connections, so that
    /// one source (however many requests it makes) gives way before any other; failing that,
    /// from any address.
    fn shed_from_the_busiest(&self, reg: &mut Registry) -> bool {
        let busiest = reg
            .per_key
            .iter()
            .max_by_key(|(_, (open, closing))| open - closing)
            .map(|(key, _)| *key);
        busiest.is_some_and(|key| self.shed(reg, Some(key))) || self.shed(reg, None)
    }

    fn mark_closing(reg: &mut Registry, conn: &Conn) {
        if !conn.closing() {
            reg.closing += 1;
            if let Some(counts) = reg.per_key.get_mut(&conn.key) {
                counts.1 += 1;
            }
        }
    }

    fn remove(&self, conn: &Conn) {
        let mut reg = self.lock();
        if reg.conns.remove(&conn.id).is_none() {
            return;
        }
        if conn.closing() {
            reg.closing -= 1;
        }
        if let Some(counts) = reg.per_key.get_mut(&conn.key) {
            counts.0 -= 1;
            if conn.closing() {
                counts.1 -= 1;
            }
            if counts.0 == 0 {
                reg.per_key.remove(&conn.key);
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if reg.conns.is_empty() {
            self.drained.notify_waiters();
        }
    }

    /// Returns once no connection is left.
    async fn drained(&self) {
        loop {
            let drained = self.drained.notified();
            if self.lock().conns.is_empty() {
                return;
            }
            drained.await;
        }
    }

    /// Looks at every connection's deadlines once.
    fn watch(&self) {
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NEVER);
        let limits = &self.limits;
        let mut reg = self.lock();
        let conns: Vec<Arc<Conn>> = reg.conns.values().cloned().collect();
        for conn in conns {
            if conn.action.load(Ordering::Acquire) == ACT_CUT {
                continue;
            }
            if conn.idle() {
                let first = conn.first_byte.load(Ordering::Acquire);
                // Closing or not, a head that is late is cut.
                if first != NEVER && now.saturating_sub(first) >= ms(limits.header_read_timeout) {
                    Self::mark_closing(&mut reg, &conn);
                    conn.ask(ACT_CUT);
                    ConnectionStats::bump(&self.stats.header_timeouts);
                    continue;
                }
                if conn.closing() {
                    continue;
                }
                if first == NEVER {
                    let since = conn.idle_since.load(Ordering::Acquire);
                    if now.saturating_sub(since) >= ms(limits.idle_timeout) {
                        Self::mark_closing(&mut reg, &conn);
                        conn.ask(ACT_CLOSE);
                        ConnectionStats::bump(&self.stats.idle_closed);
                    }
                }
                continue;
            }
            let age = now.saturating_sub(conn.request_start.load(Ordering::Acquire));
            let body_late =
                !conn.body_done.load(Ordering::Acquire) && age >= ms(limits.body_read_timeout);
            let answer_late = limits.request_timeout.is_some_and(|t| age >= ms(t));
            if body_late || answer_late {
                conn.late.notify_waiters();
            }
        }
    }
}

/// A connection's byte stream, noting when the first byte of a request arrives.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let conn = &self.conn;
            // The first byte of a head starts its clock: between requests, or after the body of
            // the one being answered (the next one, pipelined).
            let clock = if conn.idle() {
                &conn.first_byte
            } else if conn.body_done.load(Ordering::Acquire) {
                &conn.early_byte
            } else {
                return polled;
            };
            if clock.load(Ordering::Relaxed) == NEVER {
                clock.store(self.connections.now_ms(), Ordering::Release);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that notes when it has been read to the end.
struct WatchedBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.conn.body_done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A timeout's answer, in Azure's error shape; the connection closes after it.
fn timeout_answer(status: StatusCode, message: String) -> axum::response::Response {
    let mut response = crate::error_response(status, &crate::error_body("Timeout", &message));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves one request on `conn`: its body watched, its answer bounded by the timeouts.
async fn answer(
    router: Router,
    connections: Arc<Connections>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<axum::response::Response, Infallible> {
    let start = connections.now_ms();
    conn.request_start.store(start, Ordering::Release);
    conn.body_done
        .store(request.body().is_end_stream(), Ordering::Release);
    let serving = Serving::start(&conn, &connections);
    let late = conn.late.notified();
    let mut request = request.map(|inner| WatchedBody {
        inner,
        conn: conn.clone(),
    });
    request.extensions_mut().insert(ConnectInfo(peer));
    let limits = connections.limits;
    let response = {
        let mut served = pin!(tower::ServiceExt::oneshot(router, request));
        let mut late = pin!(late);
        loop {
            tokio::select! {
                biased;
                response = &mut served => break response.unwrap_or_else(|never| match never {}),
                () = &mut late => {
                    let age = Duration::from_millis(connections.now_ms().saturating_sub(start));
                    let body_done = conn.body_done.load(Ordering::Acquire);
                    if !body_done && age >= limits.body_read_timeout {
                        ConnectionStats::bump(&connections.stats.body_timeouts);
                        tracing::debug!(target: "latch::http", %peer, "request body too slow; answered 408");
                        break timeout_answer(
                            StatusCode::REQUEST_TIMEOUT,
                            format!("The request body did not arrive within {} seconds.", limits.body_read_timeout.as_secs()),
                        );
                    }
                    if let Some(limit) = limits.request_timeout.filter(|t| age >= *t) {
                        ConnectionStats::bump(&connections.stats.request_timeouts);
                        tracing::warn!(target: "latch::http", %peer, "request not answered within {} s", limit.as_secs());
                        let status = if body_done { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::REQUEST_TIMEOUT };
                        break timeout_answer(
                            status,
                            format!("The request was not answered within {} seconds.", limit.as_secs()),
                        );
                    }
                    // Woken for an earlier request's deadline: wait again.
                    late.set(conn.late.notified());
                }
            }
        }
    };
    conn.served.store(true, Ordering::Relaxed);
    drop(serving);
    Ok(response)
}

/// One request in progress on a connection; when it ends (answered, dropped, or unwound by a
/// panic) the connection is idle again, its next head timed from its first byte.
struct Serving<'a> {
    conn: &'a Conn,
    connections: &'a Connections,
}

impl<'a> Serving<'a> {
    fn start(conn: &'a Conn, connections: &'a Connections) -> Self {
        conn.early_byte.store(NEVER, Ordering::Release);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Serving { conn, connections }
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let conn = self.conn;
        conn.first_byte.store(
            conn.early_byte.swap(NEVER, Ordering::AcqRel),
            Ordering::Release,
        );
        conn.idle_since
            .store(self.connections.now_ms(), Ordering::Release);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place in the registry, given up however its task ends (a panic included).
struct Registered {
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.remove(&self.conn);
    }
}

/// Serves one connection until it ends, is asked to close, or the server stops.
async fn connection<S>(
    io: S,
    peer: SocketAddr,
    router: Router,
    connections: Arc<Connections>,
    conn: Arc<Conn>,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _registered = Registered {
        conn: conn.clone(),
        connections: connections.clone(),
    };
    let io = TokioIo::new(Watched {
        inner: io,
        conn: conn.clone(),
        connections: connections.clone(),
    });
    let service = {
        let connections = connections.clone();
        let conn = conn.clone();
        hyper::service::service_fn(move |request| {
            answer(
                router.clone(),
                connections.clone(),
                conn.clone(),
                peer,
                request,
            )
        })
    };
    let mut served = pin!(hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service));
    let mut drain_by = None;
    loop {
        let draining = drain_by.is_some();
        let deadline = drain_by.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(target: "latch::http", %peer, error = %e, "connection ended");
                }
                break;
            }
            () = conn.wake.notified() => {
                if conn.action.load(Ordering::Acquire) == ACT_CUT {
                    tracing::debug!(target: "latch::http", %peer, "request head too slow or shed mid-head; connection cut");
                    break;
                }
                if !draining {
                    served.as_mut().graceful_shutdown();
                    drain_by = Some(tokio::time::Instant::now() + connections.limits.drain_timeout());
                }
            }
            _ = stopping.wait_for(|s| *s), if !draining => {
                served.as_mut().graceful_shutdown();
                drain_by = Some(tokio::time::Instant::now() + connections.limits.drain_timeout());
            }
            () = tokio::time::sleep_until(deadline), if draining => {
                tracing::debug!(target: "latch::http", %peer, "connection did not finish in time; dropped");
                break;
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets the
/// connections finish what they are serving; returns when the last has closed.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let connections = Arc::new(Connections {
        limits,
        started: Instant::now(),
        registry: Mutex::new(Registry::default()),
        stats,
        drained: Notify::new(),
    });
    let (stop, stopping) = watch::channel(false);
    // The deadlines are watched until the last connection has closed, drain included.
    let watcher = {
        let connections = connections.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(connections.limits.tick());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                connections.watch();
            }
        })
    };
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (io, peer) = listener.accept() => {
                let Some(conn) = connections.admit(peer) else {
                    tracing::debug!(target: "latch::http", %peer, "connection over the bounds, nothing idle to shed; closed");
                    continue;
                };
                // Each connection is a task of its own; the registry counts them (a `JoinSet`
                // would take a lock shared by every connection on each wake-up).
                tokio::spawn(connection(
                    io,
                    peer,
                    router.clone(),
                    connections.clone(),
                    conn,
                    stopping.clone(),
                ));
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    connections.drained().await;
    watcher.abort();
    Ok(())
}

#[cfg(test)]
mod tests;
