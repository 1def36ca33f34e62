//! `[store]`: the embedded store in the data directory, or a shared PostgreSQL database; and how
//! soon a change made by another process reaches the checks.

use std::path::PathBuf;
use std::time::Duration;

use super::file::StoreFile;
use super::{ConfigError, Overrides};

/// Where the store is.
#[derive(Clone, Debug)]
pub(crate) struct StoreSettings {
    /// The shared store's connection string (it may hold a password: never logged); without
    /// it, the embedded store in the data directory.
    pub(crate) database_url: Option<DatabaseUrl>,
    /// The certificates trusted for TLS to the database, instead of the web PKI roots.
    pub(crate) database_ca: Option<PathBuf>,
    /// How long the checks may answer from memory before they read the store's state version
    /// again: the bound on seeing a change made by another process (changes made by this one
    /// are seen at once).
    pub(crate) recheck: Duration,
}

/// A database connection string: it may hold a password, so `Debug` shows none of it.
#[derive(Clone)]
pub(crate) struct DatabaseUrl(zeroize::Zeroizing<String>);

impl DatabaseUrl {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl StoreSettings {
    pub(super) fn resolve(f: StoreFile, o: &Overrides) -> Result<StoreSettings, ConfigError> {
        let invalid = |setting, message: &str| ConfigError::Invalid {
            setting,
            message: message.into(),
        };
        let database_url = o.database_url.clone().or(f.url).filter(|u| !u.is_empty());
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.contains("host="))
            {
                return Err(invalid(
                    "store.url",
                    "is not a PostgreSQL connection string (postgres://user@host:port/db)",
                ));
            }
        }
        let recheck_ms = match f.recheck_ms {
            Some(ms) if !(0..=1000).contains(&ms) => {
                return Err(invalid("store.recheck_ms", "must be 0 to 1000"))
            }
            Some(ms) => ms,
            // One file on one machine: a change by the admin CLI is seen within a millisecond,
            // and the version is read at most a thousand times a second instead of on every
            // call. Replicas over the network: within the second replicas promise, with one
            // round trip every 100 ms instead of several per call.
            None if database_url.is_some() => 100,
            None => 1,
        };
        Ok(StoreSettings {
            database_url: database_url.map(|u| DatabaseUrl(zeroize::Zeroizing::new(u))),
            database_ca: o.database_ca.clone().or(f.ca_file),
            recheck: Duration::from_millis(recheck_ms.unsigned_abs()),
        })
    }
}
