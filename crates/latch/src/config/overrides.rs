//! What the environment and the command line set: they win over the file. The environment is
//! read here and nowhere else.

use std::path::PathBuf;

/// Values from the environment and the command line; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir` / `LATCH_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--sts-listen` / `LATCH_STS_LISTEN`.
    pub sts_listen: Option<String>,
    /// `LATCH_STS_PUBLIC_URL`.
    pub sts_public_url: Option<String>,
    /// `LATCH_ISSUER`.
    pub issuer: Option<String>,
    /// `LATCH_REGION`.
    pub region: Option<String>,
    /// `LATCH_AUDIT_CHAIN`.
    pub audit_chain: Option<String>,
    /// `--face-listen` / `LATCH_FACE_LISTEN`.
    pub face_listen: Option<String>,
    /// `--admin-listen` / `LATCH_ADMIN_LISTEN`.
    pub admin_listen: Option<String>,
    /// `LATCH_FACE_UPSTREAM_URL`.
    pub face_upstream_url: Option<String>,
    /// `LATCH_FACE_UPSTREAM_KEY`.
    pub face_upstream_key: Option<String>,
    /// `LATCH_FACE_ENGINE`: `on` or `off`.
    pub face_engine: Option<String>,
    /// `LATCH_FACE_MODELS_DIR`.
    pub face_models_dir: Option<PathBuf>,
    /// `LATCH_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `LATCH_LOG`.
    pub log_level: Option<String>,
    /// `--tls` / `LATCH_TLS`: `on` or `off`.
    pub tls_mode: Option<String>,
    /// `--tls-cert` / `LATCH_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` / `LATCH_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-cname` / `LATCH_TLS_CNAME`.
    pub tls_cname: Option<String>,
    /// `LATCH_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `LATCH_DATABASE_CA`.
    pub database_ca: Option<PathBuf>,
    /// `--metrics-listen` / `LATCH_METRICS_LISTEN`.
    pub metrics_listen: Option<String>,
    /// `--no-demo`: `Some(false)`.
    pub demo: Option<bool>,
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
            demo: None,
        }
    }
}
