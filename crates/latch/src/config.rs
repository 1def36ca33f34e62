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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    audit: AuditFile,
    #[serde(default)]
    sts: StsFile,
    #[serde(default)]
    face: FaceFile,
    #[serde(default)]
    admin: AdminFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    tls: TlsFile,
    #[serde(default)]
    store: StoreFile,
    #[serde(default)]
    metrics: MetricsFile,
    #[serde(default)]
    server: ServerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    client_address_header: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    url: Option<String>,
    ca_file: Option<PathBuf>,
    recheck_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    mode: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaceFile {
    listen: Option<String>,
    upstream_url: Option<String>,
    upstream_key: Option<String>,
    upstream_timeout_secs: Option<u64>,
    forward_limited_access_token: Option<bool>,
    rate_limit_per_second: Option<f64>,
    rate_limit_burst: Option<f64>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    leeway_secs: Option<i64>,
    store_outage: Option<String>,
    store_outage_secs: Option<i64>,
    engine: Option<String>,
    models_dir: Option<PathBuf>,
    #[serde(default)]
    image_url_hosts: Vec<String>,
    image_url_timeout_secs: Option<u64>,
    #[serde(default)]
    features: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    chain: Option<String>,
    checkpoint_every_records: Option<u64>,
    checkpoint_every_secs: Option<i64>,
    archive_after_days: Option<u32>,
    journal_segment_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StsFile {
    listen: Option<String>,
    public_url: Option<String>,
    issuer: Option<String>,
    region: Option<String>,
    rate_limit_per_second: Option<f64>,
    rate_limit_burst: Option<f64>,
    address_rate_limit_per_second: Option<f64>,
    address_rate_limit_burst: Option<f64>,
    refusal_summary_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    format: Option<String>,
    level: Option<String>,
}

/// Values from the environment and the command line; they win over the file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    /// `--data-dir` / `LATCH_DATA_DIR`.
    pub(crate) data_dir: Option<PathBuf>,
    /// `--sts-listen` / `LATCH_STS_LISTEN`.
    pub(crate) sts_listen: Option<String>,
    /// `LATCH_STS_PUBLIC_URL`.
    pub(crate) sts_public_url: Option<String>,
    /// `LATCH_ISSUER`.
    pub(crate) issuer: Option<String>,
    /// `LATCH_REGION`.
    pub(crate) region: Option<String>,
    /// `LATCH_AUDIT_CHAIN`.
    pub(crate) audit_chain: Option<String>,
    /// `--face-listen` / `LATCH_FACE_LISTEN`.
    pub(crate) face_listen: Option<String>,
    /// `--admin-listen` / `LATCH_ADMIN_LISTEN`.
    pub(crate) admin_listen: Option<String>,
    /// `LATCH_FACE_UPSTREAM_URL`.
    pub(crate) face_upstream_url: Option<String>,
    /// `LATCH_FACE_UPSTREAM_KEY`.
    pub(crate) face_upstream_key: Option<String>,
    /// `LATCH_FACE_ENGINE`: `on` or `off`.
    pub(crate) face_engine: Option<String>,
    /// `LATCH_FACE_MODELS_DIR`.
    pub(crate) face_models_dir: Option<PathBuf>,
    /// `LATCH_LOG_FORMAT`.
    pub(crate) log_format: Option<String>,
    /// `LATCH_LOG`.
    pub(crate) log_level: Option<String>,
    /// `--tls` / `LATCH_TLS`: `on` or `off`.
    pub(crate) tls_mode: Option<String>,
    /// `--tls-cert` / `LATCH_TLS_CERT`.
    pub(crate) tls_cert: Option<PathBuf>,
    /// `--tls-key` / `LATCH_TLS_KEY`.
    pub(crate) tls_key: Option<PathBuf>,
    /// `--tls-cname` / `LATCH_TLS_CNAME`.
    pub(crate) tls_cname: Option<String>,
    /// `LATCH_DATABASE_URL`.
    pub(crate) database_url: Option<String>,
    /// `LATCH_DATABASE_CA`.
    pub(crate) database_ca: Option<PathBuf>,
    /// `--metrics-listen` / `LATCH_METRICS_LISTEN`.
    pub(crate) metrics_listen: Option<String>,
}

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

/// How logs are written (to standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Where the store lives.
    pub(crate) data_dir: PathBuf,
    /// This process's audit chain.
    pub(crate) audit_chain: String,
    /// A signed checkpoint after this many records...
    pub(crate) checkpoint_every_records: u64,
    /// ...or this many seconds, also when idle.
    pub(crate) checkpoint_every_secs: i64,
    /// The default age of `latch audit archive`.
    pub(crate) archive_after_days: Option<u32>,
    /// How the embedded store's audit journal is laid out.
    pub(crate) journal: latch_audit::journal::Options,
    /// Where the STS listens.
    pub(crate) sts_listen: SocketAddr,
    /// The STS's public URL, no trailing `/`; when unset, `http://` and the bound address.
    pub(crate) sts_public_url: Option<String>,
    /// `iss`.
    pub(crate) issuer: String,
    /// `region`.
    pub(crate) region: Option<String>,
    /// Where the Face front listens.
    pub(crate) face_listen: SocketAddr,
    /// Where the admin API listens.
    pub(crate) admin_listen: SocketAddr,
    /// The Face front's checks and limits.
    pub(crate) face: latch_face::FaceConfig,
    /// The Face front's upstream, if any.
    pub(crate) face_upstream: Option<latch_face::backend::UpstreamConfig>,
    /// The built-in engine, unless turned off or an upstream is set.
    pub(crate) face_engine: Option<FaceEngineConfig>,
    /// Where the engine's weights are kept (fetched there, digests checked, on first start;
    /// `latch face-models fetch` uses it too, whether or not the engine runs).
    pub(crate) face_models_dir: PathBuf,
    /// The verifier's clock leeway, in seconds.
    pub(crate) leeway_secs: i64,
    /// Log format.
    pub(crate) log_format: LogFormat,
    /// Log filter (`tracing_subscriber::EnvFilter` syntax).
    pub(crate) log_level: String,
    /// HTTPS or not, and with which certificate.
    pub(crate) tls: TlsSetting,
    /// The shared store's connection string (it may hold a password: never logged); without
    /// it, the embedded store in `data_dir`.
    pub(crate) database_url: Option<DatabaseUrl>,
    /// The certificates trusted for TLS to the database, instead of the web PKI roots.
    pub(crate) database_ca: Option<PathBuf>,
    /// How long the checks may answer from memory before they read the store's state version
    /// again: the bound on seeing a change made by another process (changes made by this one
    /// are seen at once).
    pub(crate) recheck: std::time::Duration,
    /// `Some(bound)`: while the store fails, the Face front answers its checks from what it read
    /// at most `bound` seconds before, and spools its usage records; `None`: it fails closed.
    pub(crate) face_outage_secs: Option<i64>,
    /// Where `GET /metrics` is served (plain HTTP), if anywhere.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// How every listener serves its connections.
    pub(crate) server: ServerConfig,
    /// The STS's rate limits and refusal summaries.
    pub(crate) sts_limits: latch_sts::StsLimits,
}

/// How every listener serves its connections: timeouts and bounds (the request timeout applies
/// to the STS and the admin API; the Face front has `face.request_timeout_secs`), and where a
/// request's client address comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServerConfig {
    pub(crate) limits: latch_http::server::ConnectionLimits,
    pub(crate) client_addresses: latch_http::client_address::ClientAddresses,
}

impl ServerConfig {
    /// The limits of a listener that bounds whole requests itself (the Face front).
    pub(crate) fn without_request_timeout(&self) -> latch_http::server::ConnectionLimits {
        latch_http::server::ConnectionLimits {
            request_timeout: None,
            ..self.limits
        }
    }
}

/// The built-in Face engine's settings (its weights are in [`Config::face_models_dir`]).
#[derive(Clone, Debug)]
pub(crate) struct FaceEngineConfig {
    /// Which image URLs it downloads.
    pub(crate) image_urls: latch_face::engine::ImageUrlPolicy,
}

/// A database connection string: it may hold a password, so `Debug` shows none of it.
#[derive(Clone)]
pub(crate) struct DatabaseUrl(zeroize::Zeroizing<String>);

impl DatabaseUrl {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl Config {
    /// Loads `file` (if given) and applies `overrides`.
    pub(crate) fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
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

    fn resolve(file: File, o: Overrides) -> Result<Config, ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        let server = resolve_server(&file.server)?;
        let sts_limits = resolve_sts_limits(&file.sts, &server)?;
        let sts_listen = listen_address("sts.listen", o.sts_listen.or(file.sts.listen))?
            .unwrap_or(([127, 0, 0, 1], 8700).into());
        let public_url = o
            .sts_public_url
            .or(file.sts.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "sts.public_url",
                    format!("'{url}' is not an http(s) URL"),
                ));
            }
        }
        let issuer = o
            .issuer
            .or(file.sts.issuer)
            .unwrap_or_else(|| "urn:latch:sts".into());
        if issuer.trim().is_empty() || issuer.len() > 256 {
            return Err(invalid("sts.issuer", "must be 1 to 256 characters".into()));
        }
        let audit_chain = o
            .audit_chain
            .or(file.audit.chain)
            .unwrap_or_else(|| "main".into());
        if audit_chain.is_empty()
            || audit_chain.len() > 64
            || !audit_chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "audit.chain",
                "must be 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        let log_format = match o.log_format.or(file.log.format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "log.format",
                    format!("'{other}' is not 'text' or 'json'"),
                ))
            }
        };
        let face = resolve_face(&file.face)?;
        let face_listen =
            listen_address("face.listen", o.face_listen.or(file.face.listen.clone()))?
                .unwrap_or(([127, 0, 0, 1], 8701).into());
        let face_upstream = match o.face_upstream_url.or(file.face.upstream_url.clone()) {
            None => None,
            Some(url) => Some(latch_face::backend::UpstreamConfig {
                url,
                key: o
                    .face_upstream_key
                    .or(file.face.upstream_key.clone())
                    .map(zeroize::Zeroizing::new),
                timeout: std::time::Duration::from_secs(
                    file.face.upstream_timeout_secs.unwrap_or(30).max(1),
                ),
                forward_limited_access_token: file
                    .face
                    .forward_limited_access_token
                    .unwrap_or(false),
            }),
        };
        let leeway_secs = file
            .face
            .leeway_secs
            .unwrap_or(latch_core::verify::DEFAULT_LEEWAY_SECS);
        if !(0..=latch_core::verify::MAX_LEEWAY_SECS).contains(&leeway_secs) {
            return Err(invalid("face.leeway_secs", "must be 0 to 60".into()));
        }
        let admin_listen =
            listen_address("admin.listen", o.admin_listen.or(file.admin.listen.clone()))?
                .unwrap_or(([127, 0, 0, 1], 8702).into());
        let checkpoint_every_records = file.audit.checkpoint_every_records.unwrap_or(1000);
        let checkpoint_every_secs = file.audit.checkpoint_every_secs.unwrap_or(60);
        if checkpoint_every_records == 0 || !(1..=86_400).contains(&checkpoint_every_secs) {
            return Err(invalid(
                "audit.checkpoint_every_*",
                "records must be at least 1, seconds 1 to 86400".into(),
            ));
        }
        let journal_segment_mib = file.audit.journal_segment_mib.unwrap_or(8);
        if !(1..=1024).contains(&journal_segment_mib) {
            return Err(invalid(
                "audit.journal_segment_mib",
                format!("{journal_segment_mib} is not 1 to 1024"),
            ));
        }
        let journal = latch_audit::journal::Options {
            segment_bytes: journal_segment_mib << 20,
        };
        // `--tls off` (or LATCH_TLS=off) sets aside what the file configures; a certificate
        // given beside it on the command line is still a contradiction.
        let file_tls = if o.tls_mode.as_deref() == Some("off") {
            TlsFile::default()
        } else {
            file.tls
        };
        let tls = resolve_tls(TlsFile {
            mode: o.tls_mode.or(file_tls.mode),
            cert: o.tls_cert.or(file_tls.cert),
            key: o.tls_key.or(file_tls.key),
            cname: o.tls_cname.or(file_tls.cname),
        })?;
        let database_url = o.database_url.or(file.store.url).filter(|u| !u.is_empty());
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.contains("host="))
            {
                return Err(invalid(
                    "store.url",
                    "is not a PostgreSQL connection string (postgres://user@host:port/db)".into(),
                ));
            }
        }
        let recheck_ms = match file.store.recheck_ms {
            Some(ms) if !(0..=1000).contains(&ms) => {
                return Err(invalid("store.recheck_ms", "must be 0 to 1000".into()))
            }
            Some(ms) => ms,
            // One file on one machine: a change by the admin CLI is seen within a millisecond,
            // and the version is read at most a thousand times a second instead of on every
            // call. Replicas over the network: within the second replicas promise, with one
            // round trip every 100 ms instead of several per call.
            None if database_url.is_some() => 100,
            None => 1,
        };
        let metrics_listen =
            listen_address("metrics.listen", o.metrics_listen.or(file.metrics.listen))?;
        let face_outage_secs = match file.face.store_outage.as_deref() {
            None | Some("closed") => {
                if file.face.store_outage_secs.is_some() {
                    return Err(invalid(
                        "face.store_outage_secs",
                        "is set, yet face.store_outage is not \"cached\"".into(),
                    ));
                }
                None
            }
            Some("cached") => {
                let secs = file.face.store_outage_secs.unwrap_or(60);
                if !(1..=3600).contains(&secs) {
                    return Err(invalid(
                        "face.store_outage_secs",
                        "must be 1 to 3600".into(),
                    ));
                }
                Some(secs)
            }
            Some(other) => {
                return Err(invalid(
                    "face.store_outage",
                    format!("'{other}' is not 'closed' or 'cached'"),
                ))
            }
        };
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let engine_on = match o.face_engine.as_deref().or(file.face.engine.as_deref()) {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid(
                    "face.engine",
                    format!("'{other}' is not 'on' or 'off'"),
                ))
            }
        };
        let image_url_timeout = file.face.image_url_timeout_secs.unwrap_or(10);
        if !(1..=60).contains(&image_url_timeout) {
            return Err(invalid(
                "face.image_url_timeout_secs",
                "must be 1 to 60".into(),
            ));
        }
        if let Some(bad) = file
            .face
            .image_url_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', '@', ' ', '*']))
        {
            return Err(invalid(
                "face.image_url_hosts",
                format!("'{bad}' is not a host or host:port"),
            ));
        }
        let face_models_dir = o
            .face_models_dir
            .or(file.face.models_dir.clone())
            .unwrap_or_else(|| data_dir.join("models"));
        let face_engine = (engine_on && face_upstream.is_none()).then(|| FaceEngineConfig {
            image_urls: latch_face::engine::ImageUrlPolicy {
                hosts: file.face.image_url_hosts.clone(),
                timeout: std::time::Duration::from_secs(image_url_timeout),
            },
        });
        Ok(Config {
            server,
            sts_limits,
            face_engine,
            face_models_dir,
            face_outage_secs,
            database_ca: o.database_ca.or(file.store.ca_file),
            recheck: std::time::Duration::from_millis(recheck_ms.unsigned_abs()),
            metrics_listen,
            tls,
            database_url: database_url.map(|u| DatabaseUrl(zeroize::Zeroizing::new(u))),
            archive_after_days: file.audit.archive_after_days,
            journal,
            checkpoint_every_records,
            checkpoint_every_secs,
            admin_listen,
            face_listen,
            face,
            face_upstream,
            leeway_secs,
            data_dir,
            audit_chain,
            sts_listen,
            sts_public_url: public_url,
            issuer,
            region: o.region.or(file.sts.region).filter(|r| !r.is_empty()),
            log_format,
            log_level: o
                .log_level
                .or(file.log.level)
                .unwrap_or_else(|| "info".into()),
        })
    }
}

/// The TLS settings, checked: `off` takes nothing else; a certificate needs its key and the
/// name clients use.
fn resolve_tls(t: TlsFile) -> Result<TlsSetting, ConfigError> {
    let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
    let cname =
        |name: &str| latch_tls::Cname::parse(name).map_err(|e| invalid("tls.cname", e.to_string()));
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

/// The Face front's settings from the file, checked.
fn resolve_face(f: &FaceFile) -> Result<latch_face::FaceConfig, ConfigError> {
    use latch_face::operation::{FeaturePolicy, Operation, Requirement};
    let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
    let defaults = latch_face::FaceConfig::default();
    let rate_limit = rate_limit(
        ["face.rate_limit_per_second", "face.rate_limit_burst"],
        f.rate_limit_per_second,
        f.rate_limit_burst,
        defaults.rate_limit,
    )?;
    let mut overrides = Vec::new();
    for (name, value) in &f.features {
        let op = Operation::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| invalid("face.features", format!("'{name}' is not an operation")))?;
        let parse = |csv: &str| {
            latch_core::FeatureSet::parse_csv(csv)
                .map_err(|e| invalid("face.features", format!("{name}: {e}")))
        };
        let requirement = match value.trim() {
            "none" => Requirement::None,
            v => match v.strip_prefix("any:") {
                Some(csv) => Requirement::Any(parse(csv)?),
                None => Requirement::All(parse(v.strip_prefix("all:").unwrap_or(v))?),
            },
        };
        overrides.push((op, requirement));
    }
    Ok(latch_face::FaceConfig {
        policy: FeaturePolicy::with_overrides(overrides),
        rate_limit,
        max_body: f.max_body_bytes.unwrap_or(defaults.max_body),
        request_timeout: f
            .request_timeout_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(defaults.request_timeout),
    })
}

/// A rate limit's two settings (named `<prefix>_per_second` and `<prefix>_burst`), checked.
fn rate_limit(
    [per_second_setting, burst_setting]: [&'static str; 2],
    per_second: Option<f64>,
    burst: Option<f64>,
    default: latch_http::rate_limit::RateLimit,
) -> Result<latch_http::rate_limit::RateLimit, ConfigError> {
    let per_second = per_second.unwrap_or(default.per_second);
    let burst = burst.unwrap_or(default.burst);
    let invalid = |setting, message: &str| ConfigError::Invalid {
        setting,
        message: message.into(),
    };
    if !(per_second.is_finite() && per_second > 0.0) {
        return Err(invalid(per_second_setting, "must be a positive number"));
    }
    if !(burst.is_finite() && burst >= 1.0) {
        return Err(invalid(burst_setting, "must be at least 1"));
    }
    Ok(latch_http::rate_limit::RateLimit { per_second, burst })
}

/// A whole number of seconds in `range`, or `default`.
fn seconds(
    setting: &'static str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(std::time::Duration::from_secs(v)),
        Some(_) => Err(ConfigError::Invalid {
            setting,
            message: format!("must be {} to {}", range.start(), range.end()),
        }),
    }
}

/// A listen address as given for `setting` (by flag, environment or file), if one was.
fn listen_address(
    setting: &'static str,
    text: Option<String>,
) -> Result<Option<SocketAddr>, ConfigError> {
    text.map(|text| {
        text.parse().map_err(|_| ConfigError::Invalid {
            setting,
            message: format!("'{text}' is not an address:port"),
        })
    })
    .transpose()
}

/// `[server]`: the connection discipline of every listener.
fn resolve_server(f: &ServerFile) -> Result<ServerConfig, ConfigError> {
    use latch_http::server::ConnectionLimits;
    let defaults = ConnectionLimits::default();
    let count = |setting, value: Option<usize>, default: usize| match value {
        None => Ok(default),
        Some(n) if (1..=1_000_000).contains(&n) => Ok(n),
        Some(_) => Err(ConfigError::Invalid {
            setting,
            message: "must be 1 to 1000000".into(),
        }),
    };
    let max_connections = count(
        "server.max_connections",
        f.max_connections,
        defaults.max_connections,
    )?;
    let max_per_address = count(
        "server.max_connections_per_address",
        f.max_connections_per_address,
        defaults.max_per_address,
    )?;
    if max_per_address > max_connections {
        return Err(ConfigError::Invalid {
            setting: "server.max_connections_per_address",
            message: format!("must not exceed server.max_connections ({max_connections})"),
        });
    }
    let proxies = f
        .trusted_proxies
        .iter()
        .map(|text| {
            latch_http::client_address::Cidr::parse(text.trim()).map_err(|e| ConfigError::Invalid {
                setting: "server.trusted_proxies",
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client_addresses = match f.client_address_header.as_deref().map(str::trim) {
        None | Some("") if !proxies.is_empty() => {
            return Err(ConfigError::Invalid {
                setting: "server.trusted_proxies",
                message: "is set, yet server.client_address_header is not".into(),
            })
        }
        None | Some("") => latch_http::client_address::ClientAddresses::peer(),
        Some(_) if proxies.is_empty() => {
            return Err(ConfigError::Invalid {
                setting: "server.client_address_header",
                message: "needs server.trusted_proxies: the addresses of the proxies that set it (CIDR ranges); from anyone else it is ignored".into(),
            })
        }
        Some(name) => latch_http::client_address::ClientAddresses::trusted_header(
            axum::http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(
                |_| ConfigError::Invalid {
                    setting: "server.client_address_header",
                    message: format!("'{name}' is not a header name"),
                },
            )?,
            proxies,
        ),
    };
    Ok(ServerConfig {
        limits: ConnectionLimits {
            header_read_timeout: seconds(
                "server.header_read_timeout_secs",
                f.header_read_timeout_secs,
                1..=300,
                defaults.header_read_timeout,
            )?,
            idle_timeout: seconds(
                "server.idle_timeout_secs",
                f.idle_timeout_secs,
                1..=3600,
                defaults.idle_timeout,
            )?,
            body_read_timeout: seconds(
                "server.body_read_timeout_secs",
                f.body_read_timeout_secs,
                1..=3600,
                defaults.body_read_timeout,
            )?,
            request_timeout: Some(seconds(
                "server.request_timeout_secs",
                f.request_timeout_secs,
                1..=3600,
                std::time::Duration::from_secs(30),
            )?),
            max_connections,
            max_per_address,
        },
        client_addresses,
    })
}

/// `[sts]`'s rate limits and refusal summaries.
fn resolve_sts_limits(
    f: &StsFile,
    server: &ServerConfig,
) -> Result<latch_sts::StsLimits, ConfigError> {
    let defaults = latch_sts::StsLimits::default();
    Ok(latch_sts::StsLimits {
        per_key: rate_limit(
            ["sts.rate_limit_per_second", "sts.rate_limit_burst"],
            f.rate_limit_per_second,
            f.rate_limit_burst,
            defaults.per_key,
        )?,
        per_address: rate_limit(
            [
                "sts.address_rate_limit_per_second",
                "sts.address_rate_limit_burst",
            ],
            f.address_rate_limit_per_second,
            f.address_rate_limit_burst,
            defaults.per_address,
        )?,
        refusal_summary: seconds(
            "sts.refusal_summary_secs",
            f.refusal_summary_secs,
            1..=3600,
            defaults.refusal_summary,
        )?,
        client_addresses: server.client_addresses.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(
            Config::parse(Path::new("test.toml"), text)?,
            Overrides::default(),
        )
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.sts_listen.to_string(), "127.0.0.1:8700");
        assert_eq!(c.sts_public_url, None);
        assert_eq!(c.issuer, "urn:latch:sts");
        assert_eq!(c.audit_chain, "main");
        assert_eq!(c.journal.segment_bytes, 8 << 20);
        assert_eq!(c.log_format, LogFormat::Text);
        let limits = c.server.limits;
        assert_eq!(
            (limits.max_connections, limits.max_per_address),
            (4096, 256)
        );
        assert_eq!(
            (
                limits.header_read_timeout.as_secs(),
                limits.idle_timeout.as_secs(),
                limits.body_read_timeout.as_secs(),
                limits.request_timeout.map(|t| t.as_secs()),
            ),
            (10, 60, 60, Some(30))
        );
        assert_eq!(c.server.without_request_timeout().request_timeout, None);
        assert_eq!(c.server.client_addresses.header(), None);
        assert_eq!(c.sts_limits, latch_sts::StsLimits::default());
    }

    #[test]
    fn the_connection_discipline_and_the_sts_limits_are_configurable() {
        let c = parse(
            "[server]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 3\nbody_read_timeout_secs = 4\n\
             request_timeout_secs = 5\nmax_connections = 100\nmax_connections_per_address = 10\n\
             client_address_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
             [sts]\nrate_limit_per_second = 7\nrate_limit_burst = 8\n\
             address_rate_limit_per_second = 9\naddress_rate_limit_burst = 10\nrefusal_summary_secs = 11\n",
        )
        .unwrap();
        let l = c.server.limits;
        assert_eq!(
            (
                l.header_read_timeout.as_secs(),
                l.idle_timeout.as_secs(),
                l.body_read_timeout.as_secs(),
                l.request_timeout.map(|t| t.as_secs()),
                l.max_connections,
                l.max_per_address
            ),
            (2, 3, 4, Some(5), 100, 10)
        );
        assert_eq!(
            c.server.client_addresses.header().map(|h| h.as_str()),
            Some("x-forwarded-for")
        );
        let sts = &c.sts_limits;
        assert_eq!((sts.per_key.per_second, sts.per_key.burst), (7.0, 8.0));
        assert_eq!(
            (sts.per_address.per_second, sts.per_address.burst),
            (9.0, 10.0)
        );
        assert_eq!(sts.refusal_summary.as_secs(), 11);
        assert_eq!(sts.client_addresses, c.server.client_addresses);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse("[sts]\nlisten = \"127.0.0.1:1\"\nissuer_typo = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("issuer_typo"), "{err}");
        let err = parse("colour = 1").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (text, setting) in [
            ("[sts]\nlisten = \"localhost\"", "sts.listen"),
            ("[sts]\npublic_url = \"ftp://x\"", "sts.public_url"),
            ("[sts]\nissuer = \"\"", "sts.issuer"),
            ("[audit]\nchain = \"a b\"", "audit.chain"),
            ("[audit]\njournal_segment_mib = 0", "audit.journal_segment_mib"),
            (
                "[audit]\njournal_segment_mib = 1025",
                "audit.journal_segment_mib",
            ),
            ("[log]\nformat = \"xml\"", "log.format"),
            (
                "[server]\nheader_read_timeout_secs = 0",
                "server.header_read_timeout_secs",
            ),
            (
                "[server]\nidle_timeout_secs = 3601",
                "server.idle_timeout_secs",
            ),
            (
                "[server]\nbody_read_timeout_secs = 0",
                "server.body_read_timeout_secs",
            ),
            (
                "[server]\nrequest_timeout_secs = 0",
                "server.request_timeout_secs",
            ),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            (
                "[server]\nmax_connections = 10\nmax_connections_per_address = 11",
                "server.max_connections_per_address",
            ),
            (
                "[server]\nclient_address_header = \"bad header\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
                "server.client_address_header",
            ),
            (
                "[server]\nclient_address_header = \"x-forwarded-for\"",
                "server.client_address_header",
            ),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]",
                "server.trusted_proxies",
            ),
            (
                "[server]\nclient_address_header = \"x-forwarded-for\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "server.trusted_proxies",
            ),
            (
                "[sts]\nrate_limit_per_second = 0",
                "sts.rate_limit_per_second",
            ),
            ("[sts]\nrate_limit_burst = 0.5", "sts.rate_limit_burst"),
            (
                "[sts]\naddress_rate_limit_per_second = -1",
                "sts.address_rate_limit_per_second",
            ),
            (
                "[sts]\naddress_rate_limit_burst = 0",
                "sts.address_rate_limit_burst",
            ),
            (
                "[sts]\nrefusal_summary_secs = 0",
                "sts.refusal_summary_secs",
            ),
            ("[face]\nrate_limit_burst = 0", "face.rate_limit_burst"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().starts_with(setting), "{text}: {err}");
        }
        assert!(parse("[sts]\nlisten = 5").is_err());
    }

    #[test]
    fn overrides_win_over_the_file() {
        let file = Config::parse(
            Path::new("t"),
            "data_dir = \"/a\"\n[sts]\nlisten = \"127.0.0.1:1\"",
        )
        .unwrap();
        let o = Overrides {
            data_dir: Some("/b".into()),
            sts_listen: Some("127.0.0.1:2".into()),
            ..Overrides::default()
        };
        let c = Config::resolve(file, o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert_eq!(c.sts_listen.port(), 2);
        assert_eq!(c.sts_public_url, None);
    }

    #[test]
    fn the_feature_table_is_configurable_and_checked() {
        use latch_face::operation::{Operation, Requirement};
        let c = parse("[face.features]\nidentify = \"all:Face.Identification,Face.Verification\"\ncreate_large_person_group = \"Face.Identification\"\ndetect_with_face_id = \"none\"\n").unwrap();
        assert!(
            matches!(c.face.policy.requirement(Operation::Identify), Requirement::All(f) if f.to_csv() == "Face.Identification,Face.Verification")
        );
        assert!(matches!(
            c.face.policy.requirement(Operation::CreateGroup),
            Requirement::All(_)
        ));
        assert_eq!(
            c.face.policy.requirement(Operation::DetectWithFaceId),
            &Requirement::None
        );
        assert!(
            matches!(
                c.face.policy.requirement(Operation::Verify),
                Requirement::All(_)
            ),
            "defaults stay"
        );
        for bad in [
            "[face.features]\nidentifyy = \"none\"",
            "[face.features]\nidentify = \"Face.Everything\"",
            "[face]\nrate_limit_per_second = 0",
            "[face]\nleeway_secs = 61",
            "[face]\nstore_outage = \"open\"",
            "[face]\nstore_outage_secs = 30",
            "[face]\nstore_outage = \"cached\"\nstore_outage_secs = 0",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_recheck_interval_depends_on_the_store_and_is_bounded() {
        use std::time::Duration;
        assert_eq!(parse("").unwrap().recheck, Duration::from_millis(1));
        let shared = "[store]\nurl = \"postgres://latch@db.example/latch\"\n";
        assert_eq!(parse(shared).unwrap().recheck, Duration::from_millis(100));
        assert_eq!(
            parse(&format!("{shared}recheck_ms = 0")).unwrap().recheck,
            Duration::ZERO
        );
        assert_eq!(
            parse("[store]\nrecheck_ms = 1000").unwrap().recheck,
            Duration::from_secs(1)
        );
        for bad in [
            "[store]\nrecheck_ms = -1",
            "[store]\nrecheck_ms = 1001",
            "[store]\nrecheck_ms = \"1\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_is_on_unless_turned_off_explicitly() {
        assert_eq!(
            parse("").unwrap().tls,
            TlsSetting::Development {
                cname: latch_tls::Cname::parse("localhost").unwrap()
            }
        );
        assert_eq!(parse("[tls]\nmode = \"off\"").unwrap().tls, TlsSetting::Off);
        let files =
            parse("[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\ncname = \"sts.example.com\"")
                .unwrap()
                .tls;
        assert!(
            matches!(&files, TlsSetting::Files { cname, .. } if cname.to_string() == "sts.example.com"),
            "{files:?}"
        );
        for (text, setting) in [
            ("[tls]\nmode = \"maybe\"", "tls.mode"),
            ("[tls]\nmode = \"off\"\ncert = \"/c.pem\"", "tls.mode"),
            (
                "[tls]\ncert = \"/c.pem\"\ncname = \"a.example\"",
                "tls.cert",
            ),
            ("[tls]\nkey = \"/k.pem\"", "tls.cert"),
            ("[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"", "tls.cname"),
            ("[tls]\ncname = \"*.example.com\"", "tls.cname"),
            ("[tls]\nverify = true", "unknown field"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(setting), "{text}: {err}");
        }
        // The override turns off what the file configures.
        let file = Config::parse(
            Path::new("t"),
            "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\ncname = \"a.example\"",
        )
        .unwrap();
        let o = Overrides {
            tls_mode: Some("off".into()),
            ..Overrides::default()
        };
        assert_eq!(Config::resolve(file, o).unwrap().tls, TlsSetting::Off);
    }

    #[test]
    fn the_engine_is_the_default_backend_and_an_upstream_replaces_it() {
        let c = parse("data_dir = \"/d\"").unwrap();
        assert_eq!(c.face_models_dir, PathBuf::from("/d/models"));
        let engine = c.face_engine.unwrap();
        assert!(engine.image_urls.hosts.is_empty());
        assert_eq!(
            engine.image_urls.timeout,
            std::time::Duration::from_secs(10)
        );
        assert!(parse("[face]\nengine = \"off\"")
            .unwrap()
            .face_engine
            .is_none());
        let upstream = parse("[face]\nupstream_url = \"https://face.example\"").unwrap();
        assert!(upstream.face_engine.is_none() && upstream.face_upstream.is_some());
        let c = parse(
            "[face]\nmodels_dir = \"/m\"\nimage_url_hosts = [\"img.example\", \"10.0.0.1:8080\"]\nimage_url_timeout_secs = 3",
        )
        .unwrap();
        assert_eq!(c.face_models_dir, PathBuf::from("/m"));
        let engine = c.face_engine.unwrap();
        assert_eq!(engine.image_urls.hosts, ["img.example", "10.0.0.1:8080"]);
        assert_eq!(engine.image_urls.timeout, std::time::Duration::from_secs(3));
        for (text, setting) in [
            ("[face]\nengine = \"yes\"", "face.engine"),
            (
                "[face]\nimage_url_timeout_secs = 0",
                "face.image_url_timeout_secs",
            ),
            (
                "[face]\nimage_url_timeout_secs = 61",
                "face.image_url_timeout_secs",
            ),
            (
                "[face]\nimage_url_hosts = [\"*.example\"]",
                "face.image_url_hosts",
            ),
            (
                "[face]\nimage_url_hosts = [\"https://img.example\"]",
                "face.image_url_hosts",
            ),
            ("[face]\nimage_url_hosts = [\"\"]", "face.image_url_hosts"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(setting), "{text}: {err}");
        }
        let o = Overrides {
            face_engine: Some("off".into()),
            ..Overrides::default()
        };
        let file = Config::parse(Path::new("t"), "").unwrap();
        assert!(Config::resolve(file, o).unwrap().face_engine.is_none());
    }

    #[test]
    fn the_example_file_in_deploy_is_valid() {
        let text = include_str!("../../../deploy/latch.example.toml");
        parse(text).unwrap();
    }
}
