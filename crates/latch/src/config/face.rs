//! `[face]`: where the Face front listens, which features each operation needs, its limits, and
//! its backend (an upstream Face service, or the built-in engine).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::file::FaceFile;
use super::values::{listen_address, rate_limit};
use super::{ConfigError, Overrides};

/// The Face front's settings.
#[derive(Clone, Debug)]
pub(crate) struct FaceSettings {
    /// Where the Face front listens.
    pub(crate) listen: SocketAddr,
    /// Its checks and limits.
    pub(crate) checks: latch_face::FaceConfig,
    /// Its upstream, if any.
    pub(crate) upstream: Option<latch_face::backend::UpstreamConfig>,
    /// The built-in engine, unless turned off or an upstream is set.
    pub(crate) engine: Option<FaceEngineConfig>,
    /// Where the engine's weights are kept (fetched there, digests checked, on first start;
    /// `latch face-models fetch` uses it too, whether or not the engine runs).
    pub(crate) models_dir: PathBuf,
    /// The verifier's clock leeway, in seconds.
    pub(crate) leeway_secs: i64,
    /// `Some(bound)`: while the store fails, the Face front answers its checks from what it read
    /// at most `bound` seconds before, and spools its usage records; `None`: it fails closed.
    pub(crate) outage_secs: Option<i64>,
}

/// The built-in Face engine's settings (its weights are in [`FaceSettings::models_dir`]).
#[derive(Clone, Debug)]
pub(crate) struct FaceEngineConfig {
    /// Which image URLs it downloads.
    pub(crate) image_urls: latch_engine::ImageUrlPolicy,
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

impl FaceSettings {
    pub(super) fn resolve(
        f: FaceFile,
        o: &Overrides,
        data_dir: &Path,
    ) -> Result<FaceSettings, ConfigError> {
        let leeway_secs = f
            .leeway_secs
            .unwrap_or(latch_core::verify::DEFAULT_LEEWAY_SECS);
        if !(0..=latch_core::verify::MAX_LEEWAY_SECS).contains(&leeway_secs) {
            return Err(invalid("face.leeway_secs", "must be 0 to 60"));
        }
        let upstream = upstream(&f, o);
        let engine = engine(&f, o)?.filter(|_| upstream.is_none());
        Ok(FaceSettings {
            checks: checks(&f)?,
            listen: listen_address("face.listen", o.face_listen.clone().or(f.listen.clone()))?
                .unwrap_or(([127, 0, 0, 1], 8701).into()),
            outage_secs: outage_secs(&f)?,
            models_dir: o
                .face_models_dir
                .clone()
                .or(f.models_dir)
                .unwrap_or_else(|| data_dir.join("models")),
            upstream,
            engine,
            leeway_secs,
        })
    }
}

/// The checks and limits: which features each operation needs, the rate limit, the largest
/// body, the whole-call timeout.
fn checks(f: &FaceFile) -> Result<latch_face::FaceConfig, ConfigError> {
    use latch_face::operation::{FeaturePolicy, Operation, Requirement};
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

/// The upstream Face service the calls are forwarded to, if one is set.
fn upstream(f: &FaceFile, o: &Overrides) -> Option<latch_face::backend::UpstreamConfig> {
    let url = o.face_upstream_url.clone().or(f.upstream_url.clone())?;
    Some(latch_face::backend::UpstreamConfig {
        url,
        key: o
            .face_upstream_key
            .clone()
            .or(f.upstream_key.clone())
            .map(zeroize::Zeroizing::new),
        timeout: std::time::Duration::from_secs(f.upstream_timeout_secs.unwrap_or(30).max(1)),
        forward_limited_access_token: f.forward_limited_access_token.unwrap_or(false),
    })
}

/// The built-in engine's settings, unless it is turned off.
fn engine(f: &FaceFile, o: &Overrides) -> Result<Option<FaceEngineConfig>, ConfigError> {
    let on = match o.face_engine.as_deref().or(f.engine.as_deref()) {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(invalid(
                "face.engine",
                format!("'{other}' is not 'on' or 'off'"),
            ))
        }
    };
    let timeout = f.image_url_timeout_secs.unwrap_or(10);
    if !(1..=60).contains(&timeout) {
        return Err(invalid("face.image_url_timeout_secs", "must be 1 to 60"));
    }
    if let Some(bad) = f
        .image_url_hosts
        .iter()
        .find(|h| h.is_empty() || h.contains(['/', '@', ' ', '*']))
    {
        return Err(invalid(
            "face.image_url_hosts",
            format!("'{bad}' is not a host or host:port"),
        ));
    }
    Ok(on.then(|| FaceEngineConfig {
        image_urls: latch_engine::ImageUrlPolicy {
            hosts: f.image_url_hosts.clone(),
            timeout: std::time::Duration::from_secs(timeout),
        },
    }))
}

/// `face.store_outage`: closed (`None`), or cached for a bound in seconds.
fn outage_secs(f: &FaceFile) -> Result<Option<i64>, ConfigError> {
    match f.store_outage.as_deref() {
        None | Some("closed") => match f.store_outage_secs {
            Some(_) => Err(invalid(
                "face.store_outage_secs",
                "is set, yet face.store_outage is not \"cached\"",
            )),
            None => Ok(None),
        },
        Some("cached") => {
            let secs = f.store_outage_secs.unwrap_or(60);
            if !(1..=3600).contains(&secs) {
                return Err(invalid("face.store_outage_secs", "must be 1 to 3600"));
            }
            Ok(Some(secs))
        }
        Some(other) => Err(invalid(
            "face.store_outage",
            format!("'{other}' is not 'closed' or 'cached'"),
        )),
    }
}
