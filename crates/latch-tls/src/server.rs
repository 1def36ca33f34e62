//! The TLS server: one configuration for every listener, a certificate that can be switched
//! while connections are being accepted, and a listener that hands `axum::serve` connections
//! whose handshake is already done.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::{CertificateSummary, VerifiedCertificate};

/// Bounds on handshakes in progress, so that silent or slow clients cannot hold a listener.
///
/// A connection over a bound takes the place of the oldest handshake in progress in its scope
/// (from its address, or on the listener), which is closed: a client that completes its
/// handshake in a few milliseconds is never locked out by connections that sit silent, and the
/// listener keeps accepting, so the kernel's backlog never fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// How long a client has to complete its handshake.
    pub timeout: Duration,
    /// Handshakes in progress on one listener.
    pub max_in_progress: usize,
    /// Handshakes in progress from one IP address. Generous: a load balancer in front opens
    /// many connections at once from one address.
    pub max_per_peer: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            timeout: Duration::from_secs(10),
            max_in_progress: 1024,
            max_per_peer: 256,
        }
    }
}

/// The certificate new handshakes get. Installing a new one changes nothing for connections
/// already open; every handshake after it presents the new one.
#[derive(Clone)]
pub struct CertificateSwitch {
    current: latch_core::Swappable<VerifiedCertificate>,
}

impl std::fmt::Debug for CertificateSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateSwitch")
            .field("current", &self.summary())
            .finish()
    }
}

impl CertificateSwitch {
    pub fn new(first: VerifiedCertificate) -> CertificateSwitch {
        CertificateSwitch {
            current: latch_core::Swappable::new(first),
        }
    }

    /// Puts a checked certificate in service for every handshake from now on.
    pub fn install(&self, next: VerifiedCertificate) {
        self.current.replace(next);
    }

    fn current(&self) -> Arc<VerifiedCertificate> {
        self.current.current()
    }

    /// What is in service now.
    pub fn summary(&self) -> CertificateSummary {
        self.current().summary().clone()
    }
}

impl ResolvesServerCert for CertificateSwitch {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

/// The server configuration every listener shares: TLS 1.3 and 1.2 only (rustls has nothing
/// older), forward-secret AEAD suites only, the server's preference order, HTTP/1.1 by ALPN, no
/// client certificates.
pub fn server_config(certificates: &CertificateSwitch) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..rustls::crypto::ring::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certificates.clone()));
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections come out of `accept` with their TLS handshake done.
///
/// Handshakes run concurrently, each in its own task with a deadline, so a slow or silent
/// client holds up no one else; [`HandshakeLimits`] bounds how many run at once, in all and
/// per client address. A failed handshake (a TLS 1.1 client, a client that does not trust the
/// certificate, a port scanner) is logged at debug level and never reaches the router.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    limits: HandshakeLimits,
    handshakes: JoinSet<(u64, SocketAddr, std::io::Result<TlsStream<TcpStream>>)>,
    /// Handshakes in progress, oldest first: their address, and how to stop them.
    in_progress: BTreeMap<u64, (IpAddr, AbortHandle)>,
    per_peer: HashMap<IpAddr, usize>,
    next: u64,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        Self::with_limits(tcp, config, HandshakeLimits::default())
    }

    pub fn with_limits(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        limits: HandshakeLimits,
    ) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            limits,
            handshakes: JoinSet::new(),
            in_progress: BTreeMap::new(),
            per_peer: HashMap::new(),
            next: 0,
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let ip = peer.ip();
        if self.per_peer.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_peer {
            let oldest = self
                .in_progress
                .iter()
                .find(|(_, (from, _))| *from == ip)
                .map(|(seq, _)| *seq);
            self.shed(oldest);
        }
        if self.in_progress.len() >= self.limits.max_in_progress {
            let oldest = self.in_progress.keys().next().copied();
            self.shed(oldest);
        }
        *self.per_peer.entry(ip).or_default() += 1;
        let _ = stream.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        let timeout = self.limits.timeout;
        self.next += 1;
        let seq = self.next;
        let handle = self.handshakes.spawn(async move {
            // Nothing is set up for a connection until it sends its first byte: one that stays
            // silent costs a task and a timer, not a TLS state.
            let handshake = async {
                stream.readable().await?;
                acceptor.accept(stream).await
            };
            let result = match tokio::time::timeout(timeout, handshake).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "handshake timed out",
                )),
            };
            (seq, peer, result)
        });
        self.in_progress.insert(seq, (ip, handle));
    }

    /// Stops handshake `seq` (its connection is closed) to make room for a new one.
    fn shed(&mut self, seq: Option<u64>) {
        if let Some((ip, handle)) = seq.and_then(|seq| self.in_progress.remove(&seq)) {
            handle.abort();
            self.uncount(ip);
            tracing::debug!(target: "latch::tls", peer = %ip, "oldest handshake in progress closed to make room");
        }
    }

    fn finished(&mut self, seq: u64) {
        if let Some((ip, _)) = self.in_progress.remove(&seq) {
            self.uncount(ip);
        }
    }

    fn uncount(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_peer.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&ip);
            }
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    match accepted {
                        Ok((stream, peer)) => self.start_handshake(stream, peer),
                        Err(e) => {
                            // Out of file descriptors, most likely: wait rather than spin.
                            tracing::error!(target: "latch::tls", error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                Some(done) = self.handshakes.join_next() => match done {
                    Ok((seq, peer, Ok(stream))) => {
                        self.finished(seq);
                        return (stream, peer);
                    }
                    Ok((seq, peer, Err(e))) => {
                        self.finished(seq);
                        tracing::debug!(target: "latch::tls", %peer, error = %e, "handshake failed");
                    }
                    // Shed: counted out already.
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => {
                        // Only if the task panicked, which a handshake does not: its place is
                        // the oldest, and the next shed frees it.
                        tracing::error!(target: "latch::tls", error = %e, "handshake task failed");
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn localhost() -> (CertificateSwitch, String) {
        let cname = crate::Cname::parse("localhost").unwrap();
        // A real clock here: the client below checks validity against the wall clock.
        let now = latch_core::Clock::now(&latch_core::SystemClock);
        let made = crate::dev::self_signed(&cname, now, 1).unwrap();
        let verified = VerifiedCertificate::from_pem(
            made.certificate_pem.as_bytes(),
            made.key_pem.as_bytes(),
            &cname,
            now,
        )
        .unwrap();
        (CertificateSwitch::new(verified), made.certificate_pem)
    }

    async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> std::io::Result<usize> {
        let mut buf = [0u8; 64];
        tokio::time::timeout(limit, stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other(format!("still open after {limit:?}")))?
    }

    #[tokio::test]
    async fn silent_clients_are_cut_off_and_cannot_crowd_out_others() {
        let (switch, ca_pem) = localhost();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let limits = HandshakeLimits {
            timeout: Duration::from_secs(3),
            max_in_progress: 4,
            max_per_peer: 2,
        };
        let mut listener = TlsListener::with_limits(tcp, server_config(&switch).unwrap(), limits);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await;
                let _ = stream.write_all(b"hello").await;
                let _ = stream.shutdown().await;
            }
        });

        let closed = |r: std::io::Result<usize>| {
            matches!(r, Ok(0))
                || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        };
        // Two silent connections take this address's two handshake slots...
        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(TcpStream::connect(addr).await.unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // ...so a third from the address takes the place of the oldest, which is closed at
        // once, long before the 3 s deadline.
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(closed(
            read_until_closed(&mut silent[0], Duration::from_secs(1)).await
        ));
        // The others are closed (or reset) at the deadline.
        for stream in [&mut silent[1], &mut third] {
            let r = read_until_closed(stream, Duration::from_secs(10)).await;
            assert!(closed(r), "a silent client was not cut off");
        }

        // A client that speaks TLS gets through a listener full of silent connections.
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut fill = Vec::new();
        for _ in 0..4 {
            fill.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                TcpStream::connect(addr).await.unwrap(),
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert_eq!(answer, b"hello");
    }

    #[test]
    fn only_tls_1_2_and_1_3_and_aead_suites_are_offered() {
        let (switch, _) = localhost();
        let config = server_config(&switch).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        for suite in &config.crypto_provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                (name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"))
                    && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")),
                "{name}"
            );
        }
    }
}
