//! The connection discipline over real sockets: what a well-behaved client relies on while
//! others hold connections open, trickle bytes or go silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::*;

/// The same, with idle connections kept long enough that no timing on a loaded machine closes
/// one before the test has looked at it.
fn patient() -> ConnectionLimits {
    ConnectionLimits {
        idle_timeout: Duration::from_secs(30),
        ..limits()
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(800),
        body_read_timeout: Duration::from_millis(600),
        request_timeout: Some(Duration::from_millis(1500)),
        max_connections: 8,
        max_per_address: 4,
    }
}

struct Running {
    addr: SocketAddr,
    stats: Arc<ConnectionStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

async fn start(limits: ConnectionLimits) -> Running {
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/wait",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "waited"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("a handler that panics");
                }
                "never"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnectionStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, limits, stats.clone(), async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stats,
        stop: Some(stop),
        task,
    }
}

/// A connection from `source` (another loopback address looks like another client).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// One request on an open connection; the status and body of its answer.
async fn exchange(stream: &mut TcpStream, request: &str) -> io::Result<(u16, String)> {
    stream.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return Ok((status, text[head_end + 4..].to_owned()));
            }
        }
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Whether the server has closed `stream` (or reset it) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout_and_a_kept_alive_one_too() {
    let s = start(limits()).await;
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(exchange(&mut kept, GET).await.unwrap(), (200, "ok".into()));
    // Still open well within the timeout: a second request on the same connection works.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(exchange(&mut kept, GET).await.unwrap().0, 200);
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);
    assert!(s.stats.idle_closed.load(Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn half_sent_headers_are_cut_at_the_header_timeout_while_others_are_served() {
    let s = start(limits()).await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let cut_started = std::time::Instant::now();
    // A byte every 200 ms keeps the connection busy, never finishing the head.
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(&mut slow, Duration::from_millis(10)).await
    });
    let mut good = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..5 {
        assert_eq!(exchange(&mut good, GET).await.unwrap().0, 200);
    }
    assert!(trickle.await.unwrap(), "the trickling client was cut");
    assert!(
        cut_started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        cut_started.elapsed()
    );
    assert_eq!(s.stats.header_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_slow_body_is_answered_408_and_the_connection_closed() {
    let s = start(limits()).await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), slow.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"Timeout""#), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(s.stats.body_timeouts.load(Ordering::Relaxed), 1);
    // A body that arrives in time is read whole.
    let mut good = TcpStream::connect(s.addr).await.unwrap();
    let (status, body) = exchange(
        &mut good,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "5"));
}

#[tokio::test]
async fn an_answer_later_than_the_request_timeout_is_a_503() {
    let s = start(limits()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let started = std::time::Instant::now();
    let (status, body) = exchange(&mut c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_millis(2800));
    assert_eq!(s.stats.request_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn over_the_per_address_bound_the_longest_idle_connection_of_that_address_is_shed() {
    let s = start(patient()).await;
    // Four idle connections from one address: its bound.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from("127.0.0.2", s.addr).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another address is not affected by that one's bound.
    let mut other = connect_from("127.0.0.3", s.addr).await;
    assert_eq!(exchange(&mut other, GET).await.unwrap().0, 200);
    // A fifth from the same address sheds the oldest of the four, and is served.
    let mut fifth = connect_from("127.0.0.2", s.addr).await;
    assert_eq!(exchange(&mut fifth, GET).await.unwrap().0, 200);
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await);
    for c in &mut idle[1..] {
        assert!(!closed_within(c, Duration::from_millis(50)).await);
    }
    assert_eq!(s.stats.shed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_half_sent_head_that_is_shed_is_cut_at_once_and_never_outlives_its_deadline() {
    let s = start(ConnectionLimits {
        header_read_timeout: Duration::from_secs(4),
        ..patient()
    })
    .await;
    let mut partial = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from("127.0.0.6", s.addr).await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        partial.push(c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fifth from the address sheds the oldest: it waits for nothing more.
    let mut fifth = connect_from("127.0.0.6", s.addr).await;
    assert!(closed_within(&mut partial[0], Duration::from_millis(1000)).await);
    assert_eq!(exchange(&mut fifth, GET).await.unwrap().0, 200);
    // The others are cut at their head's deadline.
    for c in &mut partial[1..] {
        assert!(closed_within(c, Duration::from_secs(8)).await);
    }
    assert_eq!(s.stats.shed.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.header_timeouts.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn a_flood_far_past_the_bound_never_stops_a_working_client() {
    let s = start(patient()).await;
    let mut good = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(exchange(&mut good, GET).await.unwrap().0, 200);
    // Ten times the listener's bound, from four addresses: each new one sheds an idle one.
    let mut flood = Vec::new();
    for i in 0..80 {
        flood.push(connect_from(&format!("127.0.0.{}", 10 + i % 4), s.addr).await);
        if i % 10 == 0 {
            assert_eq!(exchange(&mut good, GET).await.unwrap().0, 200);
        }
    }
    // The shed ones close within moments; the bound holds.
    let mut open = u64::MAX;
    for _ in 0..50 {
        open = s.stats.open.load(Ordering::Relaxed);
        if open <= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(open <= 8, "{open} connections open");
    assert_eq!(exchange(&mut good, GET).await.unwrap().0, 200);
    // And a new client still gets in.
    let mut late = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(exchange(&mut late, GET).await.unwrap().0, 200);
}

#[tokio::test]
async fn when_every_connection_in_scope_is_busy_the_new_one_is_closed() {
    let s = start(ConnectionLimits {
        max_per_address: 2,
        ..limits()
    })
    .await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.4", s.addr).await;
        c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect_from("127.0.0.4", s.addr).await;
    assert!(closed_within(&mut third, Duration::from_millis(500)).await);
    assert_eq!(s.stats.refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_peer_address_reaches_the_handlers() {
    let s = start(limits()).await;
    let mut c = connect_from("127.0.0.5", s.addr).await;
    let (status, body) = exchange(&mut c, "GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "127.0.0.5"));
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_accepts_nothing_new() {
    let mut s = start(ConnectionLimits {
        request_timeout: Some(Duration::from_secs(10)),
        ..limits()
    })
    .await;
    let mut in_flight = TcpStream::connect(s.addr).await.unwrap();
    in_flight
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.stop.take().unwrap().send(());
    // The idle connection closes at once; the listener no longer accepts.
    assert!(closed_within(&mut idle, Duration::from_millis(500)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(s.addr).await.is_err());
    // The request in flight gets its answer.
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("late"));
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_handler_that_panics_gives_its_connection_back() {
    let s = start(ConnectionLimits {
        max_per_address: 2,
        ..limits()
    })
    .await;
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.7", s.addr).await;
        assert!(exchange(&mut c, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err());
    }
    let mut after = connect_from("127.0.0.7", s.addr).await;
    assert_eq!(exchange(&mut after, GET).await.unwrap().0, 200);
    assert_eq!(s.stats.refused.load(Ordering::Relaxed), 0);
    assert_eq!(s.stats.open.load(Ordering::Relaxed), 1);
}

/// A head that starts while the previous request is being answered is timed from its first
/// byte, not given the idle timeout. (Bytes of a next head that arrive in the very segment of
/// the previous request are in hyper's buffer before the request is dispatched and cannot be
/// told apart: such a head has the idle timeout.)
#[tokio::test]
async fn a_pipelined_head_is_timed_from_its_first_byte() {
    let s = start(ConnectionLimits {
        idle_timeout: Duration::from_secs(10),
        ..limits()
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
    assert_eq!(s.stats.header_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn during_shutdown_a_half_sent_head_is_still_cut_at_its_deadline() {
    let mut s = start(limits()).await;
    let mut half = TcpStream::connect(s.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.stop.take().unwrap().send(());
    assert!(closed_within(&mut half, Duration::from_secs(3)).await);
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn at_the_listeners_bound_the_busiest_address_gives_way() {
    let s = start(ConnectionLimits {
        max_connections: 6,
        max_per_address: 6,
        ..patient()
    })
    .await;
    // One address holds five connections, each answered once; another holds one, newer and
    // never answered.
    let mut flood = Vec::new();
    for _ in 0..5 {
        let mut c = connect_from("127.0.0.8", s.addr).await;
        assert_eq!(exchange(&mut c, GET).await.unwrap().0, 200);
        flood.push(c);
    }
    let mut other = connect_from("127.0.0.9", s.addr).await;
    for _ in 0..200 {
        if s.stats.open.load(Ordering::Relaxed) == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.stats.open.load(Ordering::Relaxed), 6);
    // A new connection sheds from the address that holds the most: its longest idle.
    let mut new = connect_from("127.0.0.10", s.addr).await;
    assert_eq!(exchange(&mut new, GET).await.unwrap().0, 200);
    assert_eq!(exchange(&mut other, GET).await.unwrap().0, 200);
    let closed = closed_within(&mut flood[0], Duration::from_secs(2)).await;
    assert!(closed, "{:?}", s.stats);
    assert_eq!(s.stats.shed.load(Ordering::Relaxed), 1);
}

#[test]
fn ipv6_clients_count_by_their_slash_64() {
    let a = address_key("2001:db8:1:2:aaaa::1".parse().unwrap());
    let b = address_key("2001:db8:1:2:bbbb::2".parse().unwrap());
    let c = address_key("2001:db8:1:3::1".parse().unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        address_key("::ffff:192.0.2.1".parse().unwrap()),
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
}
