//! Self-signed certificates for development: `latch tls self-signed`, and `serve` when no
//! certificate is configured. Clients trust one only when told to (`curl --cacert`), and every
//! start that serves one says it is for development only.

use latch_core::UnixTime;

use crate::{Cname, TlsError};

/// A development certificate and its key, as PEM.
pub struct SelfSigned {
    pub certificate_pem: String,
    /// PKCS#8. Write it where only the owner can read it.
    pub key_pem: zeroize::Zeroizing<String>,
}

/// The organization name every development certificate carries.
pub const DEVELOPMENT_ORGANIZATION: &str = "latch development certificate (not for production)";

/// A P-256 certificate for `cname`, valid from a minute before `now` for `days` days. A name
/// that is `localhost` also covers 127.0.0.1 and ::1, the addresses it stands for.
pub fn self_signed(cname: &Cname, now: UnixTime, days: u32) -> Result<SelfSigned, TlsError> {
    let failed = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut names = vec![cname.to_string()];
    if names[0] == "localhost" {
        names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
    let start = time::OffsetDateTime::from_unix_timestamp(now.0 - 60)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(days));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cname.to_string());
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, DEVELOPMENT_ORGANIZATION);
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let certificate = params.self_signed(&key).map_err(failed)?;
    Ok(SelfSigned {
        certificate_pem: certificate.pem(),
        key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
    })
}
