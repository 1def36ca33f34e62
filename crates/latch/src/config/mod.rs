//! Configuration: defaults, then the TOML file, then environment variables and flags.
//!
//! The file is strict: an unknown key is an error, not a typo silently ignored. Everything is
//! checked before a socket is bound; a bad configuration exits with code 78 (`EX_CONFIG`).
//!
//! | setting | file | environment | flag | default |
//! |---|---|---|---|---|
//! | data directory | `data_dir` | `LATCH_DATA_DIR` | `--data-dir` | `./data` |
//! | shared store (PostgreSQL) | `store.url` | `LATCH_DATABASE_URL` | | none: the embedded store in the data directory |
//! | CA for TLS to the database (PEM) | `store.ca_file` | `LATCH_DATABASE_CA` | | the web PKI roots |
//! | how soon a change made by another process reaches the checks (ms, 0..=1000) | `store.recheck_ms` | | | 1 on the embedded store, 100 on PostgreSQL |
//! | audit chain name | `audit.chain` | `LATCH_AUDIT_CHAIN` | | `main` |
//! | archive records older than (days) | `audit.archive_after_days` | | `--older-than-days` | none |
//! | signed checkpoint every | `audit.checkpoint_every_records`, `audit.checkpoint_every_secs` | | | 1000 records, 60 s |
//! | size of an audit journal segment (MiB, 1..=1024; embedded store) | `audit.journal_segment_mib` | | | 8 |
//! | STS listen address | `sts.listen` | `LATCH_STS_LISTEN` | `--sts-listen` | `127.0.0.1:8700` |
//! | STS public URL | `sts.public_url` | `LATCH_STS_PUBLIC_URL` | | `http://` + bound address |
//! | token issuer (`iss`) | `sts.issuer` | `LATCH_ISSUER` | | `urn:latch:sts` |
//! | `region` claim | `sts.region` | `LATCH_REGION` | | none |
//! | admin API listen address | `admin.listen` | `LATCH_ADMIN_LISTEN` | `--admin-listen` | `127.0.0.1:8702` |
//! | Face front listen address | `face.listen` | `LATCH_FACE_LISTEN` | `--face-listen` | `127.0.0.1:8701` |
//! | Face upstream | `face.upstream_url` | `LATCH_FACE_UPSTREAM_URL` | | none: the built-in engine |
//! | built-in Face engine | `face.engine` (`on`, `off`) | `LATCH_FACE_ENGINE` | | `on` unless an upstream is set (`off`: calls answered 501) |
//! | engine weights (fetched there on first start) | `face.models_dir` | `LATCH_FACE_MODELS_DIR` | | `<data_dir>/models` |
//! | hosts the engine downloads image URLs from | `face.image_url_hosts` | | | none |
//! | image download timeout | `face.image_url_timeout_secs` (1..=60) | | | 10 |
//! | upstream's key | `face.upstream_key` | `LATCH_FACE_UPSTREAM_KEY` | | none |
//! | upstream timeout | `face.upstream_timeout_secs` | | | 30 |
//! | pass `LimitedAccessToken` upstream | `face.forward_limited_access_token` | | | false |
//! | calls per second per key, burst | `face.rate_limit_per_second`, `face.rate_limit_burst` | | | 10, 20 |
//! | largest body | `face.max_body_bytes` | | | 6 MiB |
//! | whole-call timeout | `face.request_timeout_secs` | | | 60 |
//! | Face front when the store fails | `face.store_outage` (`closed`, `cached`), `face.store_outage_secs` (1..=3600) | | | `closed`; 60 s when cached |
//! | token clock leeway | `face.leeway_secs` (0..=60) | | | 30 |
//! | operation → features | `[face.features]`: `identify = "Face.Identification"`, `detect_with_face_id = "any:Face.Identification,Face.Verification"`, `create_large_person_group = "none"` | | | wire.md §5 |
//! | TLS on or off | `tls.mode` (`on`, `off`) | `LATCH_TLS` | `--tls` | `on` |
//! | certificate chain, key (PEM) | `tls.cert`, `tls.key` | `LATCH_TLS_CERT`, `LATCH_TLS_KEY` | `--tls-cert`, `--tls-key` | a development certificate in `<data_dir>/tls/` |
//! | the name clients use | `tls.cname` | `LATCH_TLS_CNAME` | `--tls-cname` | `localhost` (development certificate only) |
//! | a request's head, from its first byte (s, 1..=300) | `server.header_read_timeout_secs` | | | 10 |
//! | a connection idle between requests (s, 1..=3600) | `server.idle_timeout_secs` | | | 60 |
//! | a request's body, from its head (s, 1..=3600; then 408) | `server.body_read_timeout_secs` | | | 60 |
//! | a whole STS or admin request (s, 1..=3600; then 503) | `server.request_timeout_secs` | | | 30 |
//! | established connections per listener; per client address (IPv6: /64) | `server.max_connections`, `server.max_connections_per_address` | | | 4096, 256 |
//! | the header a trusted proxy puts the client address in (last entry), and the proxies' addresses (CIDR) | `server.client_address_header`, `server.trusted_proxies` | | | none: the peer address |
//! | STS calls per second per key, burst | `sts.rate_limit_per_second`, `sts.rate_limit_burst` | | | 100, 200 |
//! | STS calls per second per client address, burst | `sts.address_rate_limit_per_second`, `sts.address_rate_limit_burst` | | | 200, 400 |
//! | interval of the STS's refusal summaries (s, 1..=3600) | `sts.refusal_summary_secs` | | | 60 |
//! | metrics listen address (plain HTTP, `GET /metrics`) | `metrics.listen` | `LATCH_METRICS_LISTEN` | `--metrics-listen` | none (off) |
//! | log format | `log.format` | `LATCH_LOG_FORMAT` | | `text` |
//! | log filter | `log.level` | `LATCH_LOG` | | `info` |
//! | a demo ISV and client in a new store | | | `--no-demo` (off) | on |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod audit;
mod face;
mod file;
mod log;
mod overrides;
mod server;
mod store;
mod sts;
mod tls;
mod values;

pub(crate) use audit::AuditSettings;
pub(crate) use face::{FaceEngineConfig, FaceSettings};
pub(crate) use log::{LogFormat, LogSettings};
pub use overrides::Overrides;
pub(crate) use server::ServerConfig;
pub(crate) use store::StoreSettings;
pub(crate) use sts::StsSettings;
pub(crate) use tls::TlsSetting;

use file::File;
use values::listen_address;

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of our shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of its domain.
    #[error("{setting}: {message}")]
    Invalid {
        /// Which setting.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The checked configuration, a section for each table of the file.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the embedded store, the audit key and the development certificate live.
    pub(crate) data_dir: PathBuf,
    /// The store: embedded or shared.
    pub(crate) store: StoreSettings,
    /// The audit log.
    pub(crate) audit: AuditSettings,
    /// The STS.
    pub(crate) sts: StsSettings,
    /// The Face front.
    pub(crate) face: FaceSettings,
    /// Where the admin API listens.
    pub(crate) admin_listen: SocketAddr,
    /// Where `GET /metrics` is served (plain HTTP), if anywhere.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// HTTPS or not, and with which certificate.
    pub(crate) tls: TlsSetting,
    /// How every listener serves its connections.
    pub(crate) server: ServerConfig,
    /// How logs are written.
    pub(crate) log: LogSettings,
    /// Whether a new store gets the demo ISV and client.
    pub(crate) demo: bool,
}

impl Config {
    /// Loads `file` (if given) and applies `overrides`.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let parsed = match file {
            None => File::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(path, &text)?
            }
        };
        Self::resolve(parsed, overrides)
    }

    fn parse(path: &Path, text: &str) -> Result<File, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Each section resolves itself from its table and the overrides.
    fn resolve(file: File, o: Overrides) -> Result<Config, ConfigError> {
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let server = ServerConfig::resolve(&file.server)?;
        Ok(Config {
            sts: StsSettings::resolve(file.sts, &o, &server)?,
            face: FaceSettings::resolve(file.face, &o, &data_dir)?,
            admin_listen: listen_address(
                "admin.listen",
                o.admin_listen.clone().or(file.admin.listen),
            )?
            .unwrap_or(([127, 0, 0, 1], 8702).into()),
            metrics_listen: listen_address(
                "metrics.listen",
                o.metrics_listen.clone().or(file.metrics.listen),
            )?,
            audit: AuditSettings::resolve(file.audit, &o)?,
            log: LogSettings::resolve(file.log, &o)?,
            tls: TlsSetting::resolve(file.tls, &o)?,
            store: StoreSettings::resolve(file.store, &o)?,
            server,
            data_dir,
            demo: o.demo.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests;
