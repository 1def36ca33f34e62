//! Checks shared by several sections: a listen address, a number of seconds in a range, a rate
//! limit's two settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;

/// A listen address as given for `setting` (by flag, environment or file), if one was.
pub(super) fn listen_address(
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

/// A whole number of seconds in `range`, or `default`.
pub(super) fn seconds(
    setting: &'static str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(Duration::from_secs(v)),
        Some(_) => Err(ConfigError::Invalid {
            setting,
            message: format!("must be {} to {}", range.start(), range.end()),
        }),
    }
}

/// A rate limit's two settings (named `<prefix>_per_second` and `<prefix>_burst`), checked.
pub(super) fn rate_limit(
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
