//! Diagnostic logs, to standard error. Audit records are not logs: they go to the store.
//!
//! Nothing secret is ever given to `tracing`: keys and tokens have no `Display`, request
//! headers that carry them are marked sensitive, and the access log has the path, never the
//! query. A test runs the server at `trace` level and searches its output for every key and
//! token it used.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, ConfigError, LogFormat};

/// The filter of `level` (`tracing_subscriber::EnvFilter` syntax), with the libraries that log
/// what they carry held to warnings whatever it says: the database driver logs query parameters
/// (key digests, signing keys) at debug level.
pub fn filter(level: &str) -> Result<EnvFilter, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        setting: "log.level",
        message,
    };
    let mut filter = EnvFilter::try_new(level).map_err(|e| invalid(format!("'{level}': {e}")))?;
    for quiet in [
        "tokio_postgres=warn",
        "postgres_protocol=warn",
        "rustls=warn",
    ] {
        filter = filter.add_directive(
            quiet
                .parse()
                .map_err(|e| invalid(format!("{quiet}: {e}")))?,
        );
    }
    Ok(filter)
}

/// Installs the global subscriber. Admin commands log warnings only, unless `LATCH_LOG` says
/// otherwise.
pub(crate) fn init(config: &Config, serving: bool) -> Result<(), ConfigError> {
    let level = if serving || config.log.from_environment {
        config.log.level.as_str()
    } else {
        "warn"
    };
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| ConfigError::Invalid {
        setting: "log.level",
        message: format!("cannot install the log: {e}"),
    })
}
