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

/// The resource-id target. Returns a label of the outcome (`ok` or the error), which a
/// driver can use to keep inputs that reach outcomes not seen before.
pub fn resource_id(data: &[u8]) -> String {
    let Ok(s) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    match ResourceId::parse(s) {
        Ok(id) => {
            assert_eq!(id.to_string(), s);
            let again = ResourceId::parse(id.canonical()).expect("a canonical form parses");
            assert_eq!(again, id);
            assert_eq!(again.canonical(), id.canonical());
            "ok".into()
        }
        Err(e) => format!("{e:?}"),
    }
}

/// The token target: `key` is the only trusted key. Returns `Ok(kind)` for an accepted token
/// and `Err(reason)` otherwise; a driver asserts that only tokens it minted are accepted.
pub fn token(
    data: &[u8],
    key: &PublicKey,
    issuer: &str,
    now: UnixTime,
) -> Result<&'static str, &'static str> {
    let Ok(s) = std::str::from_utf8(data) else {
        return Err("not utf-8");
    };
    if let Ok(decoded) = jws::decode(s) {
        let mut parts = s.split('.');
        let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert_eq!(decoded.signing_input, format!("{h}.{p}"));
        assert_eq!(jws::b64url(&decoded.payload), p);
    }
    let verifier = Verifier::new(issuer, vec![key.clone()], 30);
    let lat = verifier.verify_limited_access(s, now);
    let at = verifier.verify_access(s, now);
    match (lat, at) {
        (Ok(_), Ok(_)) => panic!("one token accepted as both kinds"),
        (Ok(_), Err(_)) => Ok("limited_access"),
        (Err(_), Ok(_)) => Ok("access"),
        (Err(e), Err(_)) => Err(e.reason()),
    }
}
