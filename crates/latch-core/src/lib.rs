//! The pure core of latch.
//!
//! Everything a token is made of, and every check a token must pass, lives here, with no
//! network, file or database access and no reading of the wall clock: the callers pass `now`.
//!
//! # Layout
//!
//! * [`audit`]: typed audit events and the hash chain that seals them.
//! * [`merkle`]: the RFC 9162 Merkle tree, roots and consistency proofs over audit records.
//! * [`resource_id`]: Azure resource ids, parsed into [`ResourceId`] with a canonical form.
//! * [`feature`]: the Limited Access feature flags and the ordered [`FeatureSet`].
//! * [`lifetime`]: the `expiredTime` bound (60..=86400 s, default 3600).
//! * [`clock`]: the [`Clock`] trait; the only place that reads the system time.
//! * [`checkpoint`]: signed checkpoints of audit chains and the offline verifier of exports.
//! * [`claims`]: the claims of the two token kinds and the JOSE header.
//! * [`json`]: strict JSON objects (no duplicate member names).
//! * [`jws`]: the strict compact-serialization decoder (sizes, alphabet, duplicate keys).
//! * [`signing`]: ES256 signing keys, `kid`s and the JWKS.
//! * [`verify`]: the verifier, which hands out `Verified…` proof types.
//! * [`secret`]: subscription keys and their digests; never printed, compared in constant time.
//! * [`swappable`]: a value readers share and a writer replaces while the service runs.
//! * [`fuzz`]: the entry points of the fuzz targets, shared by the tests and `latch-fuzz`.

pub mod audit;
pub mod checkpoint;
pub mod claims;
pub mod clock;
pub mod feature;
pub mod fuzz;
pub mod json;
pub mod jws;
pub mod lifetime;
pub mod merkle;
pub mod resource_id;
pub mod secret;
pub mod signing;
pub mod swappable;
pub mod verify;

pub use claims::{AccessClaims, LimitedAccessClaims, TokenKind};
pub use clock::{Clock, FixedClock, SystemClock, UnixTime};
pub use feature::{Feature, FeatureSet};
pub use lifetime::Lifetime;
pub use resource_id::ResourceId;
pub use signing::{Jwks, SigningKey};
pub use swappable::Swappable;
pub use verify::{VerifiedAccessToken, VerifiedLimitedAccess, Verifier};
