//! What latch's outgoing HTTPS clients trust (the engine's image downloads, the upstream Face
//! service, the registries the engine's weights come from): the web PKI roots, and the
//! certificates the system trusts where it keeps them. A site's own CA, or its TLS-inspecting
//! egress proxy, is trusted there and not in the web PKI.

use std::path::PathBuf;

/// Where Debian, Alpine and Fedora-like systems keep their trusted certificates.
pub const SYSTEM_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The web PKI roots and the first system bundle that reads (`SSL_CERT_FILE` first); a
/// certificate in it that rustls cannot use is skipped.
pub fn client_roots() -> rustls::RootCertStore {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let bundles = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for bundle in bundles {
        if let Ok(certs) = rustls_pki_types::CertificateDer::pem_file_iter(&bundle) {
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
            break;
        }
    }
    roots
}

/// A client configuration trusting [`client_roots`], with the ring provider.
pub fn client_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| {
        b.with_root_certificates(client_roots())
            .with_no_client_auth()
    })
    .unwrap_or_else(|_| {
        rustls::ClientConfig::builder()
            .with_root_certificates(client_roots())
            .with_no_client_auth()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_pki_is_always_trusted_and_the_system_bundle_is_added() {
        let web = webpki_roots::TLS_SERVER_ROOTS.len();
        let roots = client_roots();
        assert!(roots.len() >= web);
        let system = SYSTEM_BUNDLES
            .iter()
            .any(|b| std::path::Path::new(b).is_file());
        if system {
            assert!(roots.len() > web, "the system bundle adds its certificates");
        }
    }
}
