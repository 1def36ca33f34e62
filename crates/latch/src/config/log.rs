//! `[log]`: how logs are written to standard error.

use super::file::LogFile;
use super::{ConfigError, Overrides};

/// How logs are written (to standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The log's format and filter.
#[derive(Clone, Debug)]
pub(crate) struct LogSettings {
    /// Log format.
    pub(crate) format: LogFormat,
    /// Log filter (`tracing_subscriber::EnvFilter` syntax).
    pub(crate) level: String,
    /// Whether the filter was given by `LATCH_LOG` (the commands other than `serve` log
    /// warnings only unless it was).
    pub(crate) from_environment: bool,
}

impl LogSettings {
    pub(super) fn resolve(f: LogFile, o: &Overrides) -> Result<LogSettings, ConfigError> {
        let format = match o.log_format.as_deref().or(f.format.as_deref()) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    setting: "log.format",
                    message: format!("'{other}' is not 'text' or 'json'"),
                })
            }
        };
        Ok(LogSettings {
            format,
            from_environment: o.log_level.is_some(),
            level: o
                .log_level
                .clone()
                .or(f.level)
                .unwrap_or_else(|| "info".into()),
        })
    }
}
