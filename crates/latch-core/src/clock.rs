//! Time as a parameter.
//!
//! Domain code never reads the wall clock: it receives a [`UnixTime`] from a [`Clock`]. The
//! server passes [`SystemClock`]; tests pass [`FixedClock`] and test expiry exactly at its
//! boundaries. `clippy.toml` forbids `SystemTime::now` everywhere else.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch, as in the JWT `NumericDate`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// `self` plus `secs` seconds, saturating.
    pub const fn plus(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// RFC 3339 text (`2026-11-22T04:00:00Z`), for humans and headers.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time, whole seconds.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place that reads the wall clock.
    fn now(&self) -> UnixTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// A clock that says what it is told; clones share the same time.
#[derive(Clone, Debug)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    /// A clock stopped at `t`.
    pub fn at(t: UnixTime) -> Self {
        FixedClock(Arc::new(AtomicI64::new(t.0)))
    }

    /// Sets the time.
    pub fn set(&self, t: UnixTime) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward (or back, with a negative number).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::at(UnixTime(1_000));
        let shared = c.clone();
        assert_eq!(c.now(), UnixTime(1_000));
        shared.advance(5);
        assert_eq!(c.now(), UnixTime(1_005));
        c.set(UnixTime(7));
        assert_eq!(shared.now(), UnixTime(7));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(UnixTime(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > UnixTime(1_577_836_800));
    }
}
