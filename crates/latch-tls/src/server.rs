//! The TLS server: one configuration for every listener, a certificate that can be switched
//! while connections are being accepted, and a listener that hands `axum::serve` connections
//! whose handshake is already done.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::{CertificateSummary, VerifiedCertificate};

/// How long a client has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress on one listener; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 1024;

/// The certificate new handshakes get. Installing a new one changes nothing for connections
/// already open; every handshake after it presents the new one.
#[derive(Clone)]
pub struct CertificateSwitch {
    current: Arc<RwLock<Arc<VerifiedCertificate>>>,
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
            current: Arc::new(RwLock::new(Arc::new(first))),
        }
    }

    /// Puts a checked certificate in service for every handshake from now on.
    pub fn install(&self, next: VerifiedCertificate) {
        let next = Arc::new(next);
        match self.current.write() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    fn current(&self) -> Arc<VerifiedCertificate> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
/// Handshakes run concurrently, each in its own task with [`HANDSHAKE_TIMEOUT`], so a slow or
/// silent client holds up no one else. A failed handshake (a TLS 1.1 client, a client that
/// does not trust the certificate, a port scanner) is logged at debug level and never reaches
/// the router.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<(SocketAddr, std::io::Result<TlsStream<TcpStream>>)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            let result =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(result) => result,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "handshake timed out",
                    )),
                };
            (peer, result)
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
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
                    Ok((peer, Ok(stream))) => return (stream, peer),
                    Ok((peer, Err(e))) => {
                        tracing::debug!(target: "latch::tls", %peer, error = %e, "handshake failed");
                    }
                    Err(e) => {
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
