//! HTTPS for latch's listeners.
//!
//! Operators bring a certificate chain and its key as PEM files (bought, or from an ACME
//! client) and name the host clients use (the *cname*). Before a certificate serves anyone it
//! is checked ([`VerifiedCertificate`]): the key must be the certificate's, the certificate
//! must cover the cname and be valid now. A failed check is an error that says what is wrong,
//! including which names the certificate does cover.
//!
//! The [`CertificateSwitch`] lets a renewed certificate take over new handshakes while the
//! server runs; [`FileWatch`] notices the renewal. [`server_config`] allows TLS 1.3 and 1.2
//! only, with forward-secret AEAD suites; [`TlsListener`] serves `axum::serve`.
//!
//! [`dev::self_signed`] makes a certificate for development only.

pub mod dev;
mod material;
pub mod roots;
mod server;
mod watch;
pub mod x509;

pub use material::{CertificateSummary, Cname, VerifiedCertificate};
pub use server::{server_config, CertificateSwitch, HandshakeLimits, TlsListener};
pub use watch::FileWatch;

/// Why a certificate or key cannot be used. Messages name the problem and never include key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("not PEM: {0}")]
    BadPem(String),
    #[error("the certificate file holds no CERTIFICATE")]
    NoCertificate,
    #[error("the key file holds no private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")]
    NoKey,
    #[error("the key file holds {0} private keys; keep only the certificate's")]
    SeveralKeys(usize),
    #[error("the private key is encrypted; decrypt it first (openssl pkcs8 -in key.pem -out plain.pem) and protect the file with its permissions")]
    EncryptedKey,
    #[error("the private key cannot sign TLS handshakes: {0}")]
    UnsupportedKey(String),
    #[error("the private key does not belong to the certificate (their public keys differ)")]
    KeyMismatch,
    #[error(transparent)]
    Malformed(#[from] x509::X509Error),
    #[error("the certificate is not usable: {0}")]
    BadCertificate(String),
    #[error("the certificate does not cover {cname}; it covers: {}", names_or_none(.names))]
    NameNotCovered { cname: String, names: Vec<String> },
    #[error("the certificate expired at {not_after}")]
    Expired { not_after: String },
    #[error("the certificate is not valid before {not_before}")]
    NotYetValid { not_before: String },
    #[error("'{0}' is not a host name or IP address clients can use (no wildcards, no port)")]
    InvalidCname(String),
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no DNS name or IP address (no subjectAltName)".to_owned()
    } else {
        names.join(", ")
    }
}
