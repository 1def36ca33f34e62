//! `[server]`: the connection discipline of every listener (timeouts, bounds) and where a
//! request's client address comes from.

use latch_http::client_address::{Cidr, ClientAddresses};
use latch_http::server::ConnectionLimits;

use super::file::ServerFile;
use super::values::seconds;
use super::ConfigError;

/// How every listener serves its connections: timeouts and bounds (the request timeout applies
/// to the STS and the admin API; the Face front has `face.request_timeout_secs`), and where a
/// request's client address comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServerConfig {
    pub(crate) limits: ConnectionLimits,
    pub(crate) client_addresses: ClientAddresses,
}

impl ServerConfig {
    /// `[server]`, checked.
    pub(super) fn resolve(f: &ServerFile) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            limits: limits(f)?,
            client_addresses: client_addresses(f)?,
        })
    }

    /// The limits of a listener that bounds whole requests itself (the Face front).
    pub(crate) fn without_request_timeout(&self) -> ConnectionLimits {
        ConnectionLimits {
            request_timeout: None,
            ..self.limits
        }
    }
}

/// The timeouts and the connection bounds.
fn limits(f: &ServerFile) -> Result<ConnectionLimits, ConfigError> {
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
    Ok(ConnectionLimits {
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
    })
}

/// Where a request's client address comes from: the peer, or the header that trusted proxies
/// set (and only they).
fn client_addresses(f: &ServerFile) -> Result<ClientAddresses, ConfigError> {
    let proxies = f
        .trusted_proxies
        .iter()
        .map(|text| {
            Cidr::parse(text.trim()).map_err(|e| ConfigError::Invalid {
                setting: "server.trusted_proxies",
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match f.client_address_header.as_deref().map(str::trim) {
        None | Some("") if !proxies.is_empty() => Err(ConfigError::Invalid {
            setting: "server.trusted_proxies",
            message: "is set, yet server.client_address_header is not".into(),
        }),
        None | Some("") => Ok(ClientAddresses::peer()),
        Some(_) if proxies.is_empty() => Err(ConfigError::Invalid {
            setting: "server.client_address_header",
            message: "needs server.trusted_proxies: the addresses of the proxies that set it (CIDR ranges); from anyone else it is ignored".into(),
        }),
        Some(name) => Ok(ClientAddresses::trusted_header(
            axum::http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(
                |_| ConfigError::Invalid {
                    setting: "server.client_address_header",
                    message: format!("'{name}' is not a header name"),
                },
            )?,
            proxies,
        )),
    }
}
