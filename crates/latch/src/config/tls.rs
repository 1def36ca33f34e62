//! `[tls]`: HTTPS with the operator's certificate, with a development certificate, or (only when
//! asked for explicitly) plain HTTP.

use std::path::PathBuf;

use super::file::TlsFile;
use super::{ConfigError, Overrides};

/// How the listeners speak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TlsSetting {
    /// Plain HTTP: only behind a proxy that terminates TLS. Chosen explicitly, never by default.
    Off,
    /// HTTPS with the operator's certificate chain and key.
    Files {
        /// The PEM chain, server certificate first.
        cert: PathBuf,
        /// The PEM private key.
        key: PathBuf,
        /// The name clients use; the certificate must cover it.
        cname: latch_tls::Cname,
    },
    /// HTTPS with a self-signed certificate in `<data_dir>/tls/`, made at the first start: for
    /// development only, and every start says so.
    Development {
        /// The name it is made for.
        cname: latch_tls::Cname,
    },
}

impl TlsSetting {
    /// Whether the listeners speak HTTPS.
    pub(crate) fn is_on(&self) -> bool {
        !matches!(self, TlsSetting::Off)
    }

    /// The file's settings under the overrides. `--tls off` (or `LATCH_TLS=off`) sets aside
    /// what the file configures; a certificate given beside it on the command line is still a
    /// contradiction.
    pub(super) fn resolve(file: TlsFile, o: &Overrides) -> Result<TlsSetting, ConfigError> {
        let file = if o.tls_mode.as_deref() == Some("off") {
            TlsFile::default()
        } else {
            file
        };
        Self::check(TlsFile {
            mode: o.tls_mode.clone().or(file.mode),
            cert: o.tls_cert.clone().or(file.cert),
            key: o.tls_key.clone().or(file.key),
            cname: o.tls_cname.clone().or(file.cname),
        })
    }

    /// `off` takes nothing else; a certificate needs its key and the name clients use.
    fn check(t: TlsFile) -> Result<TlsSetting, ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        let cname = |name: &str| {
            latch_tls::Cname::parse(name).map_err(|e| invalid("tls.cname", e.to_string()))
        };
        match t.mode.as_deref() {
            Some("off") => {
                if t.cert.is_some() || t.key.is_some() || t.cname.is_some() {
                    return Err(invalid(
                        "tls.mode",
                        "is off, yet tls.cert, tls.key or tls.cname is set: remove one or the other"
                            .into(),
                    ));
                }
                Ok(TlsSetting::Off)
            }
            None | Some("on") => match (t.cert, t.key, t.cname) {
                (None, None, name) => Ok(TlsSetting::Development {
                    cname: cname(name.as_deref().unwrap_or("localhost"))?,
                }),
                (Some(cert), Some(key), Some(name)) => Ok(TlsSetting::Files {
                    cert,
                    key,
                    cname: cname(&name)?,
                }),
                (Some(_), Some(_), None) => Err(invalid(
                    "tls.cname",
                    "is required with a certificate: the host name clients use, which the certificate must cover".into(),
                )),
                _ => Err(invalid(
                    "tls.cert",
                    "and tls.key go together: the PEM chain and its private key".into(),
                )),
            },
            Some(other) => Err(invalid(
                "tls.mode",
                format!("'{other}' is not 'on' or 'off'"),
            )),
        }
    }
}
