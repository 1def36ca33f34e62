//! Fuzz targets: each takes arbitrary bytes and panics only if a property is broken.
//!
//! They are driven on stable Rust by `latch-fuzz` (a mutational fuzzer over a seed corpus) and
//! by the property tests. What they assert:
//!
//! * [`resource_id`]: parsing never panics; whatever parses displays as its input, and its
//!   canonical form parses to an equal id whose canonical form is the same.
//! * [`token`]: decoding and verifying never panic; whatever decodes re-encodes to the same
//!   segments (one encoding per token); no input verifies unless it was signed by the key.

use crate::clock::UnixTime;
use crate::jws;
use crate::resource_id::ResourceId;
use crate::signing::PublicKey;
use crate::verify::Verifier;

/// The resource-id target.
pub fn resource_id(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = ResourceId::parse(s) {
        assert_eq!(id.to_string(), s);
        let again = ResourceId::parse(id.canonical()).expect("a canonical form parses");
        assert_eq!(again, id);
        assert_eq!(again.canonical(), id.canonical());
    }
}

/// The token target. `key` is the only trusted key; `signed` tells whether `data` is a token
/// that key signed (the driver knows which seeds it minted).
pub fn token(data: &[u8], key: &PublicKey, issuer: &str, now: UnixTime) -> bool {
    let Ok(s) = std::str::from_utf8(data) else {
        return false;
    };
    if let Ok(decoded) = jws::decode(s) {
        let mut parts = s.split('.');
        let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert_eq!(decoded.signing_input, format!("{h}.{p}"));
        assert_eq!(jws::b64url(&decoded.payload), p);
    }
    let verifier = Verifier::new(issuer, vec![key.clone()], 30);
    let lat = verifier.verify_limited_access(s, now).is_ok();
    let at = verifier.verify_access(s, now).is_ok();
    assert!(!(lat && at), "one token accepted as both kinds");
    lat || at
}
