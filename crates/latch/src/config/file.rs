//! The configuration file's shape: every table and key it may hold, each optional. Unknown keys
//! are refused (`deny_unknown_fields`), so a typo is an error, not a setting silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) data_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) audit: AuditFile,
    #[serde(default)]
    pub(super) sts: StsFile,
    #[serde(default)]
    pub(super) face: FaceFile,
    #[serde(default)]
    pub(super) admin: AdminFile,
    #[serde(default)]
    pub(super) log: LogFile,
    #[serde(default)]
    pub(super) tls: TlsFile,
    #[serde(default)]
    pub(super) store: StoreFile,
    #[serde(default)]
    pub(super) metrics: MetricsFile,
    #[serde(default)]
    pub(super) server: ServerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    pub(super) header_read_timeout_secs: Option<u64>,
    pub(super) idle_timeout_secs: Option<u64>,
    pub(super) body_read_timeout_secs: Option<u64>,
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_address: Option<usize>,
    pub(super) client_address_header: Option<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoreFile {
    pub(super) url: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) recheck_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub(super) mode: Option<String>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) cname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaceFile {
    pub(super) listen: Option<String>,
    pub(super) upstream_url: Option<String>,
    pub(super) upstream_key: Option<String>,
    pub(super) upstream_timeout_secs: Option<u64>,
    pub(super) forward_limited_access_token: Option<bool>,
    pub(super) rate_limit_per_second: Option<f64>,
    pub(super) rate_limit_burst: Option<f64>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) leeway_secs: Option<i64>,
    pub(super) store_outage: Option<String>,
    pub(super) store_outage_secs: Option<i64>,
    pub(super) engine: Option<String>,
    pub(super) models_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) image_url_hosts: Vec<String>,
    pub(super) image_url_timeout_secs: Option<u64>,
    #[serde(default)]
    pub(super) features: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFile {
    pub(super) chain: Option<String>,
    pub(super) checkpoint_every_records: Option<u64>,
    pub(super) checkpoint_every_secs: Option<i64>,
    pub(super) archive_after_days: Option<u32>,
    pub(super) journal_segment_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StsFile {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) region: Option<String>,
    pub(super) rate_limit_per_second: Option<f64>,
    pub(super) rate_limit_burst: Option<f64>,
    pub(super) address_rate_limit_per_second: Option<f64>,
    pub(super) address_rate_limit_burst: Option<f64>,
    pub(super) refusal_summary_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub(super) format: Option<String>,
    pub(super) level: Option<String>,
}
