//! `[sts]`: where the STS listens, the URL and the claims it issues with, and its rate limits.

use std::net::SocketAddr;

use super::file::StsFile;
use super::server::ServerConfig;
use super::values::{listen_address, rate_limit, seconds};
use super::{ConfigError, Overrides};

/// The STS's settings.
#[derive(Clone, Debug)]
pub(crate) struct StsSettings {
    /// Where the STS listens.
    pub(crate) listen: SocketAddr,
    /// The STS's public URL, no trailing `/`; when unset, `http://` and the bound address.
    pub(crate) public_url: Option<String>,
    /// `iss`.
    pub(crate) issuer: String,
    /// `region`.
    pub(crate) region: Option<String>,
    /// The rate limits and refusal summaries.
    pub(crate) limits: latch_sts::StsLimits,
}

impl StsSettings {
    pub(super) fn resolve(
        f: StsFile,
        o: &Overrides,
        server: &ServerConfig,
    ) -> Result<StsSettings, ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        let limits = limits(&f, server)?;
        let listen = listen_address("sts.listen", o.sts_listen.clone().or(f.listen))?
            .unwrap_or(([127, 0, 0, 1], 8700).into());
        let public_url = o
            .sts_public_url
            .clone()
            .or(f.public_url)
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
            .clone()
            .or(f.issuer)
            .unwrap_or_else(|| "urn:latch:sts".into());
        if issuer.trim().is_empty() || issuer.len() > 256 {
            return Err(invalid("sts.issuer", "must be 1 to 256 characters".into()));
        }
        Ok(StsSettings {
            listen,
            public_url,
            issuer,
            region: o.region.clone().or(f.region).filter(|r| !r.is_empty()),
            limits,
        })
    }
}

/// The rate limits and refusal summaries.
fn limits(f: &StsFile, server: &ServerConfig) -> Result<latch_sts::StsLimits, ConfigError> {
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
