//! The settings this process runs with, as the first audit record it writes.

use latch_audit::writer::AuditLog;
use latch_core::audit::Actor;
use latch_core::Clock;

use crate::cli::Role;
use crate::config::{Config, TlsSetting};
use crate::output::CliError;

/// Records the settings this process runs with (no secret: the upstream key is reported only
/// as present or not).
pub(super) async fn record(
    audit: &AuditLog,
    config: &Config,
    role: Role,
    clock: &dyn Clock,
) -> Result<(), CliError> {
    let settings = serde_json::json!({
        "role": format!("{role:?}").to_lowercase(),
        "dataDir": config.data_dir.display().to_string(),
        "store": crate::store::describe(config),
        "auditChain": config.audit.chain,
        "checkpointEveryRecords": config.audit.checkpoint_every_records,
        "checkpointEverySecs": config.audit.checkpoint_every_secs,
        "stsListen": config.sts.listen.to_string(),
        "faceListen": config.face.listen.to_string(),
        "adminListen": config.admin_listen.to_string(),
        "issuer": config.sts.issuer,
        "region": config.sts.region,
        "leewaySecs": config.face.leeway_secs,
        "faceUpstream": config.face.upstream.as_ref().map(|u| u.url.clone()),
        "faceUpstreamKey": config.face.upstream.as_ref().is_some_and(|u| u.key.is_some()),
        "rateLimit": [config.face.checks.rate_limit.per_second, config.face.checks.rate_limit.burst],
        "server": {
            "headerReadTimeoutSecs": config.server.limits.header_read_timeout.as_secs(),
            "idleTimeoutSecs": config.server.limits.idle_timeout.as_secs(),
            "bodyReadTimeoutSecs": config.server.limits.body_read_timeout.as_secs(),
            "requestTimeoutSecs": config.server.limits.request_timeout.map(|t| t.as_secs()),
            "maxConnections": config.server.limits.max_connections,
            "maxConnectionsPerAddress": config.server.limits.max_per_address,
            "clientAddressHeader": config.server.client_addresses.header().map(|h| h.as_str()),
            "trustedProxies": config.server.client_addresses.proxies().iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "stsRateLimit": [config.sts.limits.per_key.per_second, config.sts.limits.per_key.burst],
        "stsAddressRateLimit": [config.sts.limits.per_address.per_second, config.sts.limits.per_address.burst],
        "refusalSummarySecs": config.sts.limits.refusal_summary.as_secs(),
        "maxBodyBytes": config.face.checks.max_body,
        "features": format!("{:?}", config.face.checks.policy),
        "tls": match &config.tls {
            TlsSetting::Off => serde_json::json!({ "mode": "off" }),
            TlsSetting::Files { cert, key, cname } => serde_json::json!({
                "mode": "files",
                "cert": cert.display().to_string(),
                "key": key.display().to_string(),
                "cname": cname.to_string(),
            }),
            TlsSetting::Development { cname } => {
                serde_json::json!({ "mode": "development", "cname": cname.to_string() })
            }
        },
    });
    let digest = latch_core::jws::b64url(ring::digest::digest(
        &ring::digest::SHA256,
        settings.to_string().as_bytes(),
    ));
    let draft = latch_core::audit::AuditDraft {
        time: clock.now(),
        request_id: None,
        actor: Actor::System,
        event: latch_core::audit::AuditEvent::ServiceConfigured {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            settings,
            digest,
        },
    };
    audit.record(draft).await.map(|_| ()).map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot write the audit log: {e}"),
            crate::exit::FAILURE,
        )
    })
}
