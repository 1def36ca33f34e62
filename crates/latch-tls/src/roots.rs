//! What latch's outgoing TLS clients trust. Clients of the public internet (the engine's image
//! downloads, the upstream Face service, the registries the engine's weights come from) trust
//! the web PKI roots and the certificates the system trusts where it keeps them: a site's own
//! CA, or its TLS-inspecting egress proxy, is trusted there and not in the web PKI. A client
//! told which CA to trust (`--cacert`, the database's CA file) trusts only the certificates of
//! that PEM file ([`roots_from_pem_file`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::TlsError;

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
    client_config_with(client_roots()).unwrap_or_else(|_| {
        rustls::ClientConfig::builder()
            .with_root_certificates(client_roots())
            .with_no_client_auth()
    })
}

/// The certificates of the PEM file at `path`, as the only roots to trust. A file that cannot
/// be read, a block that is not a certificate rustls accepts, or a file with no certificate is
/// an error.
pub fn roots_from_pem_file(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    for cert in certs {
        let cert = cert.map_err(|e| TlsError::BadPem(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(roots)
}

/// A client configuration trusting `roots`: the ring provider, TLS 1.3 and 1.2, no client
/// certificate.
pub fn client_config_with(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_its_certificates_or_an_error_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let cname = crate::Cname::parse("localhost").unwrap();
        let cert = crate::dev::self_signed(&cname, latch_core::UnixTime(1_800_000_000), 1).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, &cert.certificate_pem).unwrap();
        assert_eq!(roots_from_pem_file(&good).unwrap().len(), 1);
        assert!(client_config_with(roots_from_pem_file(&good).unwrap()).is_ok());

        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            roots_from_pem_file(&missing),
            Err(TlsError::Read { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            roots_from_pem_file(&empty),
            Err(TlsError::NoCertificate)
        ));
        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(roots_from_pem_file(&garbled).is_err());
    }

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
