//! Token lifetimes: the `expiredTime` query parameter of `issueLimitedAccessToken`.
//!
//! Azure accepts 60 to 86400 seconds and defaults to 3600. The parser is strict: ASCII digits
//! only (no sign, no spaces, no fraction, no exponent), so `"+60"`, `" 60"` and `"60.0"` are
//! refused rather than guessed at.

use std::fmt;
use std::time::Duration;

/// A token lifetime within the allowed bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lifetime(u32);

/// Why an `expiredTime` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    /// Not a whole number of seconds.
    #[error("expiredTime must be a whole number of seconds between 60 and 86400")]
    NotANumber,
    /// A number outside 60..=86400.
    #[error("expiredTime must be between 60 and 86400 seconds; got {0}")]
    OutOfRange(u64),
}

impl Lifetime {
    /// The shortest lifetime, in seconds.
    pub const MIN_SECS: u32 = 60;
    /// The longest lifetime, in seconds.
    pub const MAX_SECS: u32 = 86_400;
    /// The lifetime when none is asked for.
    pub const DEFAULT: Lifetime = Lifetime(3600);
    /// The longest lifetime.
    pub const MAX: Lifetime = Lifetime(Self::MAX_SECS);

    /// A lifetime of `secs` seconds, if within bounds.
    pub fn from_secs(secs: u64) -> Result<Self, LifetimeError> {
        if (u64::from(Self::MIN_SECS)..=u64::from(Self::MAX_SECS)).contains(&secs) {
            Ok(Lifetime(secs as u32))
        } else {
            Err(LifetimeError::OutOfRange(secs))
        }
    }

    /// Parses the query parameter's value; `None` (absent) is the default.
    pub fn parse_param(value: Option<&str>) -> Result<Self, LifetimeError> {
        let Some(value) = value else {
            return Ok(Self::DEFAULT);
        };
        // Twenty digits overflow u64; anything longer is out of range anyway.
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LifetimeError::NotANumber);
        }
        let secs: u64 = value.parse().map_err(|_| LifetimeError::NotANumber)?;
        Self::from_secs(secs)
    }

    /// The lifetime in seconds.
    pub const fn as_secs(self) -> u32 {
        self.0
    }

    /// The lifetime as a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        assert_eq!(Lifetime::parse_param(None).unwrap().as_secs(), 3600);
        assert_eq!(Lifetime::parse_param(Some("60")).unwrap().as_secs(), 60);
        assert_eq!(
            Lifetime::parse_param(Some("86400")).unwrap().as_secs(),
            86400
        );
        assert_eq!(
            Lifetime::parse_param(Some("59")),
            Err(LifetimeError::OutOfRange(59))
        );
        assert_eq!(
            Lifetime::parse_param(Some("86401")),
            Err(LifetimeError::OutOfRange(86401))
        );
        assert_eq!(
            Lifetime::parse_param(Some("0")),
            Err(LifetimeError::OutOfRange(0))
        );
    }

    #[test]
    fn only_plain_digits() {
        for bad in [
            "",
            "abc",
            "+60",
            "-60",
            " 60",
            "60 ",
            "60.0",
            "6e1",
            "0x3c",
            "99999999999999999999",
        ] {
            assert_eq!(
                Lifetime::parse_param(Some(bad)),
                Err(LifetimeError::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(Lifetime::parse_param(Some("0060")).unwrap().as_secs(), 60);
    }

    proptest! {
        #[test]
        fn accepted_values_are_in_bounds(s in "\\PC{0,24}") {
            if let Ok(l) = Lifetime::parse_param(Some(&s)) {
                prop_assert!((60..=86400).contains(&l.as_secs()));
                prop_assert!(s.bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn every_number_is_classified(n in 0u64..200_000) {
            let r = Lifetime::parse_param(Some(&n.to_string()));
            prop_assert_eq!(r.is_ok(), (60..=86400).contains(&n));
        }
    }
}
