//! A certificate chain and its private key, read from PEM and checked before use.
//!
//! [`VerifiedCertificate`] is the proof that the checks passed: the only way to make one is
//! [`VerifiedCertificate::from_pem`], and only a `VerifiedCertificate` can be put in service
//! ([`crate::CertificateSwitch::install`]). The checks, in order:
//!
//! 1. the chain file holds at least one `CERTIFICATE`, the first being the server's own;
//! 2. the key file holds one unencrypted private key: PKCS#8 (`PRIVATE KEY`), SEC1
//!    (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`), of a kind rustls can sign with;
//! 3. the key is the certificate's (their public keys are compared);
//! 4. the certificate covers the configured name (its subject alternative names, by webpki's
//!    rules, wildcards included);
//! 5. the certificate is valid now: not before `notBefore`, not after `notAfter`.

use std::path::Path;
use std::sync::Arc;

use latch_core::UnixTime;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::x509::CertificateInfo;
use crate::TlsError;

/// The name clients use to reach the server: a DNS name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cname(ServerName<'static>);

impl Cname {
    /// Parses a host name (`sts.example.com`) or an IP address; wildcards and ports are refused.
    pub fn parse(name: &str) -> Result<Cname, TlsError> {
        let invalid = || TlsError::InvalidCname(name.to_owned());
        if name.contains('*') || name.contains(':') && name.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid());
        }
        ServerName::try_from(name.to_ascii_lowercase())
            .map(Cname)
            .map_err(|_| invalid())
    }

    /// The name as clients write it.
    pub fn as_str(&self) -> String {
        match &self.0 {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        }
    }
}

impl std::fmt::Display for Cname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// What an operator (and the audit log) is told about a certificate in service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    /// SHA-256 of the server certificate's DER, lowercase hex (what `openssl x509 -fingerprint
    /// -sha256` prints, without the colons).
    pub fingerprint: String,
    /// The subject alternative names.
    pub names: Vec<String>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// Issued by its own subject: fit for development only.
    pub self_signed: bool,
    /// Certificates in the chain file, the server's own included.
    pub chain_length: usize,
}

/// A chain and key that passed every check for a name at a time.
#[derive(Clone)]
pub struct VerifiedCertificate {
    pub(crate) key: Arc<CertifiedKey>,
    summary: CertificateSummary,
}

impl std::fmt::Debug for VerifiedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of every message.
        f.debug_struct("VerifiedCertificate")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl VerifiedCertificate {
    /// Reads both files and checks them (see the module documentation).
    pub fn load(
        chain: &Path,
        key: &Path,
        cname: &Cname,
        now: UnixTime,
    ) -> Result<VerifiedCertificate, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| TlsError::Read {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })
        };
        Self::from_pem(&read(chain)?, &read(key)?, cname, now)
    }

    /// Checks a PEM chain and a PEM key.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        cname: &Cname,
        now: UnixTime,
    ) -> Result<VerifiedCertificate, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadPem(format!("certificate file: {e}")))?;
        let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
        let info = CertificateInfo::parse(leaf.as_ref())?;
        let key = private_key(key_pem)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| TlsError::UnsupportedKey(e.to_string()))?;
        let certified = CertifiedKey::new(chain.clone(), signer);
        certified.keys_match().map_err(|_| TlsError::KeyMismatch)?;

        let end_entity = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        if end_entity
            .verify_is_valid_for_subject_name(&cname.0)
            .is_err()
        {
            return Err(TlsError::NameNotCovered {
                cname: cname.to_string(),
                names: info.names.clone(),
            });
        }
        if now.0 > info.not_after.0 {
            return Err(TlsError::Expired {
                not_after: info.not_after.to_rfc3339(),
            });
        }
        if now.0 < info.not_before.0 {
            return Err(TlsError::NotYetValid {
                not_before: info.not_before.to_rfc3339(),
            });
        }
        Ok(VerifiedCertificate {
            key: Arc::new(certified),
            summary: CertificateSummary {
                fingerprint: hex(
                    ring::digest::digest(&ring::digest::SHA256, leaf.as_ref()).as_ref()
                ),
                names: info.names.clone(),
                not_before: info.not_before,
                not_after: info.not_after,
                self_signed: info.is_self_issued(),
                chain_length: chain.len(),
            },
        })
    }

    pub fn summary(&self) -> &CertificateSummary {
        &self.summary
    }
}

/// The one private key in a PEM file.
fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    // PKCS#8 encryption, and OpenSSL's older PEM encryption headers.
    if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(pem, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::EncryptedKey);
    }
    let mut keys = Vec::new();
    for item in <(rustls_pki_types::pem::SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = item.map_err(|e| TlsError::BadPem(format!("key file: {e}")))?;
        use rustls_pki_types::pem::SectionKind;
        match kind {
            SectionKind::PrivateKey => keys.push(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::EcPrivateKey => keys.push(PrivateKeyDer::Sec1(der.into())),
            SectionKind::RsaPrivateKey => keys.push(PrivateKeyDer::Pkcs1(der.into())),
            // Parameters (`EC PARAMETERS`) and certificates may sit beside the key.
            _ => {}
        }
    }
    match keys.len() {
        0 => Err(TlsError::NoKey),
        1 => Ok(keys.remove(0)),
        n => Err(TlsError::SeveralKeys(n)),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15T08:00:00Z, inside every fixture's validity.
    const NOW: UnixTime = UnixTime(1_800_000_000);

    fn cname(s: &str) -> Cname {
        Cname::parse(s).unwrap()
    }

    struct Made {
        chain: String,
        key: String,
    }

    /// A leaf for `names`, issued by a throwaway CA, valid over `[from, to]`.
    fn issued(names: &[&str], from: i64, to: i64) -> Made {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        leaf.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        leaf.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        Made {
            chain: format!("{}{}", cert.pem(), ca_cert.pem()),
            key: key.serialize_pem(),
        }
    }

    fn check(made: &Made, name: &str, now: UnixTime) -> Result<VerifiedCertificate, TlsError> {
        VerifiedCertificate::from_pem(
            made.chain.as_bytes(),
            made.key.as_bytes(),
            &cname(name),
            now,
        )
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn accepts_a_chain_that_covers_the_name() {
        let made = issued(&["sts.example.com", "10.0.0.7"], NOW.0 - 10, NOW.0 + 10);
        let ok = check(&made, "sts.example.com", NOW).unwrap();
        let summary = ok.summary();
        assert_eq!(summary.names, ["sts.example.com", "10.0.0.7"]);
        assert_eq!(summary.chain_length, 2);
        assert!(!summary.self_signed);
        assert_eq!(summary.fingerprint.len(), 64);
        // Names compare without regard to case; an IP address is a name too.
        check(&made, "STS.Example.com", NOW).unwrap();
        check(&made, "10.0.0.7", NOW).unwrap();
    }

    #[test]
    fn a_name_the_certificate_lacks_is_refused_with_the_names_it_has() {
        let made = issued(
            &["sts.example.com", "*.face.example.com"],
            NOW.0 - 10,
            NOW.0 + 10,
        );
        check(&made, "eu.face.example.com", NOW).unwrap();
        let err = check(&made, "face.example.com", NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the certificate does not cover face.example.com; it covers: sts.example.com, *.face.example.com"
        );
        let err = check(&made, "a.b.face.example.com", NOW).unwrap_err();
        assert!(matches!(err, TlsError::NameNotCovered { .. }), "{err}");
    }

    #[test]
    fn validity_is_inclusive_at_both_ends() {
        let made = issued(&["a.example"], NOW.0, NOW.0 + 100);
        check(&made, "a.example", NOW).unwrap();
        check(&made, "a.example", UnixTime(NOW.0 + 100)).unwrap();
        let err = check(&made, "a.example", UnixTime(NOW.0 + 101)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the certificate expired at {}",
                UnixTime(NOW.0 + 100).to_rfc3339()
            )
        );
        let err = check(&made, "a.example", UnixTime(NOW.0 - 1)).unwrap_err();
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err}");
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let one = issued(&["a.example"], NOW.0 - 10, NOW.0 + 10);
        let other = issued(&["a.example"], NOW.0 - 10, NOW.0 + 10);
        let err = VerifiedCertificate::from_pem(
            one.chain.as_bytes(),
            other.key.as_bytes(),
            &cname("a.example"),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
    }

    #[test]
    fn reads_sec1_and_pkcs1_keys() {
        for (cert, key, name) in [
            ("ec-sec1.crt", "ec-sec1.key", "ec.example"),
            ("rsa-pkcs1.crt", "rsa-pkcs1.key", "rsa.example"),
        ] {
            let ok =
                VerifiedCertificate::from_pem(&fixture(cert), &fixture(key), &cname(name), NOW)
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(ok.summary().self_signed);
        }
        // A key of one form beside the certificate of another.
        let err = VerifiedCertificate::from_pem(
            &fixture("ec-sec1.crt"),
            &fixture("rsa-pkcs1.key"),
            &cname("ec.example"),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
    }

    #[test]
    fn refuses_files_that_are_not_a_chain_and_a_key() {
        let made = issued(&["a.example"], NOW.0 - 10, NOW.0 + 10);
        let name = cname("a.example");
        let try_pem = |chain: &[u8], key: &[u8]| {
            VerifiedCertificate::from_pem(chain, key, &name, NOW)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            try_pem(b"", made.key.as_bytes()),
            Err("the certificate file holds no CERTIFICATE".to_owned())
        );
        assert_eq!(
            try_pem(made.key.as_bytes(), made.key.as_bytes()),
            Err("the certificate file holds no CERTIFICATE".to_owned())
        );
        assert_eq!(
            try_pem(made.chain.as_bytes(), made.chain.as_bytes()),
            Err(TlsError::NoKey.to_string())
        );
        let two = format!("{}{}", made.key, issued(&["b"], 0, 1).key);
        assert_eq!(
            try_pem(made.chain.as_bytes(), two.as_bytes()),
            Err(TlsError::SeveralKeys(2).to_string())
        );
        assert_eq!(
            try_pem(made.chain.as_bytes(), &fixture("ec-encrypted.key")),
            Err(TlsError::EncryptedKey.to_string())
        );
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            try_pem(made.chain.as_bytes(), legacy.as_bytes()),
            Err(TlsError::EncryptedKey.to_string())
        );
        let cut = made.chain.replacen("-----END CERTIFICATE-----", "", 1);
        // Depending on the base64 padding, the PEM reader refuses the file, or runs the two
        // certificates together and the DER reader refuses the result.
        let err = try_pem(cut.as_bytes(), made.key.as_bytes()).unwrap_err();
        assert!(
            err.starts_with("not PEM") || err.ends_with("bytes after the certificate"),
            "{err}"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(try_pem(garbage.as_bytes(), made.key.as_bytes())
            .unwrap_err()
            .starts_with("not a well-formed X.509 certificate"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = VerifiedCertificate::load(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
            &cname("a.example"),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read /nonexistent/cert.pem: entity not found"
        );
    }

    #[test]
    fn cnames_are_host_names_or_addresses() {
        for good in [
            "sts.example.com",
            "localhost",
            "10.1.2.3",
            "::1",
            "STS.EXAMPLE.COM",
        ] {
            Cname::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        assert_eq!(cname("STS.Example.COM").to_string(), "sts.example.com");
        for bad in [
            "",
            "*.example.com",
            "sts.example.com:443",
            "a b",
            "https://a.example",
            "a..b",
        ] {
            assert!(
                matches!(Cname::parse(bad), Err(TlsError::InvalidCname(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let made = issued(&["a.example"], NOW.0 - 10, NOW.0 + 10);
        let ok = check(&made, "a.example", NOW).unwrap();
        let shown = format!("{ok:?}");
        assert!(
            shown.contains("a.example") && !shown.contains("key:"),
            "{shown}"
        );
    }
}
