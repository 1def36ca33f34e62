//! A TCP proxy the test owns, put between the server and a backend (the database) so that a
//! test can cut the network the way a failover, a firewall or a dead link does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::harness::within;

/// Forwards every connection made to [`TcpProxy::addr`] to the upstream, until cut.
pub struct TcpProxy {
    addr: SocketAddr,
    /// True while connections are forwarded; false while cut.
    open: watch::Sender<bool>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    /// Connections accepted since the start.
    accepted: AtomicUsize,
    /// Connections being forwarded now.
    live: AtomicUsize,
    /// Whether the port is open.
    listening: AtomicBool,
}

impl TcpProxy {
    /// A proxy on a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, opened) = watch::channel(true);
        let counts = Arc::new(Counts::default());
        counts.listening.store(true, Ordering::Release);
        let task = tokio::spawn(run(listener, upstream, opened, counts.clone()));
        TcpProxy {
            addr,
            open,
            counts,
            task,
        }
    }

    /// The address to connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::Acquire)
    }

    /// Closes every forwarded connection and the port itself: from when this returns, a new
    /// connection is refused (`ECONNREFUSED`) until [`TcpProxy::restore`].
    pub async fn cut(&self) {
        self.open.send_replace(false);
        within(Duration::from_secs(5), "the proxy cut", async || {
            !self.counts.listening.load(Ordering::Acquire)
                && self.counts.live.load(Ordering::Acquire) == 0
        })
        .await;
    }

    /// Listens again on the same port and forwards new connections.
    pub async fn restore(&self) {
        self.open.send_replace(true);
        within(Duration::from_secs(5), "the proxy restored", async || {
            self.counts.listening.load(Ordering::Acquire)
        })
        .await;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The forwarding tasks end when the sender is gone.
        self.task.abort();
    }
}

enum Event {
    Accepted(Option<TcpStream>),
    Cut,
    /// The proxy is gone.
    Dropped,
}

async fn run(
    listener: TcpListener,
    upstream: SocketAddr,
    mut open: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let addr = listener.local_addr().unwrap();
    let mut listener = Some(listener);
    loop {
        match &listener {
            Some(l) => {
                let event = tokio::select! {
                    accepted = l.accept() => Event::Accepted(accepted.ok().map(|(c, _)| c)),
                    changed = open.wait_for(|o| !*o) => match changed {
                        Ok(_) => Event::Cut,
                        Err(_) => Event::Dropped,
                    },
                };
                match event {
                    Event::Accepted(Some(client)) => {
                        counts.accepted.fetch_add(1, Ordering::AcqRel);
                        // Counted live before the cut can look.
                        counts.live.fetch_add(1, Ordering::AcqRel);
                        tokio::spawn(forward(client, upstream, open.clone(), counts.clone()));
                    }
                    Event::Accepted(None) => {}
                    Event::Cut => {
                        // Dropping the listener closes the port.
                        listener = None;
                        counts.listening.store(false, Ordering::Release);
                    }
                    Event::Dropped => return,
                }
            }
            None => {
                if open.wait_for(|o| *o).await.is_err() {
                    return;
                }
                listener = Some(
                    TcpListener::bind(addr)
                        .await
                        .unwrap_or_else(|e| panic!("the proxy's port {addr} again: {e}")),
                );
                counts.listening.store(true, Ordering::Release);
            }
        }
    }
}

/// Copies both ways between `client` and a new connection to `upstream` until either side
/// closes or the proxy is cut; then both are closed. `counts.live` already counts it.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut open: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    struct Live(Arc<Counts>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _live = Live(counts);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|o| !*o) => {}
    }
}
