//! What the environment and the command line set: they win over the file. The environment is
//! read here and nowhere else.

use std::path::PathBuf;

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

impl Overrides {
    /// The settings the environment gives (`LATCH_*`; an empty value counts as unset).
    pub(crate) fn from_environment() -> Overrides {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Overrides {
            data_dir: env("LATCH_DATA_DIR").map(PathBuf::from),
            sts_listen: env("LATCH_STS_LISTEN"),
            sts_public_url: env("LATCH_STS_PUBLIC_URL"),
            issuer: env("LATCH_ISSUER"),
            region: env("LATCH_REGION"),
            audit_chain: env("LATCH_AUDIT_CHAIN"),
            face_listen: env("LATCH_FACE_LISTEN"),
            admin_listen: env("LATCH_ADMIN_LISTEN"),
            face_upstream_url: env("LATCH_FACE_UPSTREAM_URL"),
            face_upstream_key: env("LATCH_FACE_UPSTREAM_KEY"),
            face_engine: env("LATCH_FACE_ENGINE"),
            face_models_dir: env("LATCH_FACE_MODELS_DIR").map(PathBuf::from),
            log_format: env("LATCH_LOG_FORMAT"),
            log_level: env("LATCH_LOG"),
            tls_mode: env("LATCH_TLS"),
            tls_cert: env("LATCH_TLS_CERT").map(PathBuf::from),
            tls_key: env("LATCH_TLS_KEY").map(PathBuf::from),
            tls_cname: env("LATCH_TLS_CNAME"),
            database_url: env("LATCH_DATABASE_URL"),
            database_ca: env("LATCH_DATABASE_CA").map(PathBuf::from),
            metrics_listen: env("LATCH_METRICS_LISTEN"),
        }
    }
}
