//! The strict JWS compact-serialization decoder.
//!
//! Everything a token says is untrusted until its signature verifies, so this module decodes as
//! little as it can and refuses anything unusual (RFC 7515 §7.1, RFC 8725 §3):
//!
//! * at most [`MAX_TOKEN_LEN`] bytes, of which at most [`MAX_HEADER_LEN`] for the header;
//! * exactly three segments (a JWE's five are refused), using only `A–Z a–z 0–9 - _ .`;
//! * base64url without padding, whitespace, or non-zero trailing bits (one encoding per value);
//! * header and payload are UTF-8 JSON objects with no duplicate member names at any depth;
//! * the header holds `alg`, `typ` and `kid` and nothing else: `jku`, `jwk`, `x5u`, `x5c`,
//!   `x5t`, `crit` and JWE parameters are refused by name, any other name as unknown.
//!
//! The payload is only split off and base64-decoded here; it is parsed after the signature has
//! been checked ([`crate::verify`]).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

use crate::verify::TokenError;

/// The longest token accepted, in bytes. Our tokens are under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The longest encoded header accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 512;

/// base64url, no padding, canonical: trailing bits must be zero.
pub(crate) const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes bytes as unpadded base64url.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

/// Decodes unpadded, canonical base64url.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, TokenError> {
    B64.decode(s).map_err(|_| TokenError::Base64)
}

/// The protected header of one of our tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The algorithm, exactly as written.
    pub alg: String,
    /// The explicit type (`lat+jwt`, `at+jwt`).
    pub typ: String,
    /// The key id. Untrusted: only ever compared against the in-memory key set.
    pub kid: String,
}

/// A token split into its parts, with nothing verified yet. Its `Debug` shows the header only:
/// the signing input and signature together are the whole token.
pub struct Decoded<'a> {
    /// The decoded header.
    pub header: Header,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes that were signed.
    pub signing_input: &'a str,
    /// The decoded payload bytes, unparsed.
    pub payload: Vec<u8>,
    /// The decoded signature bytes, any length.
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Decoded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Splits and decodes a compact JWS, refusing anything outside the rules of the module doc.
pub fn decode(token: &str) -> Result<Decoded<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(TokenError::Malformed);
    }
    if h.len() > MAX_HEADER_LEN {
        return Err(TokenError::TooLarge);
    }
    let header = parse_header(&b64url_decode(h)?)?;
    let payload = b64url_decode(p)?;
    let signature = b64url_decode(s)?;
    Ok(Decoded {
        header,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload,
        signature,
    })
}

fn parse_header(bytes: &[u8]) -> Result<Header, TokenError> {
    let map = parse_object(bytes)?;
    let (mut alg, mut typ, mut kid) = (None, None, None);
    for (name, value) in map {
        let slot = match name.as_str() {
            "alg" => &mut alg,
            "typ" => &mut typ,
            "kid" => &mut kid,
            // Keys come only from our own key set (RFC 8725 §3.10); critical extensions and JWE
            // parameters are never understood here.
            "jku" | "jwk" | "x5u" | "x5c" | "x5t" | "x5t#S256" | "crit" | "enc" | "zip" | "b64"
            | "epk" | "p2s" | "p2c" => return Err(TokenError::HeaderParameterRefused),
            _ => return Err(TokenError::HeaderParameterUnknown),
        };
        match value {
            Value::String(s) if !s.is_empty() && s.len() <= 128 => *slot = Some(s),
            _ => return Err(TokenError::Json),
        }
    }
    match (alg, typ, kid) {
        (Some(alg), Some(typ), Some(kid)) => Ok(Header { alg, typ, kid }),
        _ => Err(TokenError::HeaderIncomplete),
    }
}

/// Parses a header or payload: a UTF-8 JSON object without duplicate member names.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, TokenError> {
    crate::json::parse_object(bytes).map_err(|e| match e {
        crate::json::JsonError::Duplicate => TokenError::DuplicateMember,
        crate::json::JsonError::Invalid | crate::json::JsonError::NotObject => TokenError::Json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        b64url(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", seg(header), seg(payload), b64url([1u8; 64]))
    }

    const H: &str = r#"{"alg":"ES256","typ":"lat+jwt","kid":"k1"}"#;

    #[test]
    fn decodes_a_well_formed_token() {
        let t = token(H, r#"{"a":1}"#);
        let d = decode(&t).unwrap();
        assert_eq!(d.header.alg, "ES256");
        assert_eq!(d.header.typ, "lat+jwt");
        assert_eq!(d.header.kid, "k1");
        assert_eq!(d.payload, br#"{"a":1}"#);
        assert_eq!(d.signature.len(), 64);
        assert_eq!(d.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn segment_count_and_alphabet() {
        let t = token(H, "{}");
        assert_eq!(
            decode(&format!("{t}.x.y")).unwrap_err(),
            TokenError::Malformed
        ); // JWE shape
        assert_eq!(
            decode(&t[..t.rfind('.').unwrap()]).unwrap_err(),
            TokenError::Malformed
        );
        assert_eq!(decode(&format!("{t} ")).unwrap_err(), TokenError::Malformed);
        assert_eq!(decode(&format!("{t}=")).unwrap_err(), TokenError::Malformed);
        assert_eq!(
            decode(&t.replacen('.', ".\n", 1)).unwrap_err(),
            TokenError::Malformed
        );
        assert_eq!(decode(&format!("+{t}")).unwrap_err(), TokenError::Malformed);
        assert_eq!(decode(&format!("/{t}")).unwrap_err(), TokenError::Malformed);
        assert_eq!(decode("a..b").unwrap_err(), TokenError::Malformed);
        assert_eq!(decode("").unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        // "{}" is e30; e31 decodes to the same bytes with non-zero trailing bits.
        let t = format!("{}.e31.{}", seg(H), b64url([1u8; 64]));
        assert_eq!(decode(&t).unwrap_err(), TokenError::Base64);
        let t = format!("{}.e.{}", seg(H), b64url([1u8; 64]));
        assert_eq!(decode(&t).unwrap_err(), TokenError::Base64);
    }

    #[test]
    fn size_bounds() {
        let big = format!(r#"{{"p":"{}"}}"#, "x".repeat(MAX_TOKEN_LEN));
        assert_eq!(decode(&token(H, &big)).unwrap_err(), TokenError::TooLarge);
        let big_header = format!(
            r#"{{"alg":"ES256","typ":"lat+jwt","kid":"{}"}}"#,
            "k".repeat(400)
        );
        assert_eq!(
            decode(&token(&big_header, "{}")).unwrap_err(),
            TokenError::TooLarge
        );
    }

    #[test]
    fn header_parameters() {
        for refused in ["jku", "jwk", "x5u", "x5c", "x5t", "crit", "enc", "zip"] {
            let h = format!(r#"{{"alg":"ES256","typ":"lat+jwt","kid":"k1","{refused}":"x"}}"#);
            assert_eq!(
                decode(&token(&h, "{}")).unwrap_err(),
                TokenError::HeaderParameterRefused,
                "{refused}"
            );
        }
        let h = r#"{"alg":"ES256","typ":"lat+jwt","kid":"k1","cty":"JWT"}"#;
        assert_eq!(
            decode(&token(h, "{}")).unwrap_err(),
            TokenError::HeaderParameterUnknown
        );
        let h = r#"{"alg":"ES256","typ":"lat+jwt"}"#;
        assert_eq!(
            decode(&token(h, "{}")).unwrap_err(),
            TokenError::HeaderIncomplete
        );
        let h = r#"{"alg":"ES256","typ":"lat+jwt","kid":7}"#;
        assert_eq!(decode(&token(h, "{}")).unwrap_err(), TokenError::Json);
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        let h = r#"{"alg":"ES256","alg":"none","typ":"lat+jwt","kid":"k1"}"#;
        assert_eq!(
            decode(&token(h, "{}")).unwrap_err(),
            TokenError::DuplicateMember
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":2}}"#).unwrap_err(),
            TokenError::DuplicateMember
        );
        assert_eq!(
            parse_object(br#"{"a":[{"b":1,"b":2}]}"#).unwrap_err(),
            TokenError::DuplicateMember
        );
        assert!(parse_object(br#"{"a":{"b":1},"b":{"a":1}}"#).is_ok());
    }

    #[test]
    fn json_must_be_one_utf8_object() {
        assert_eq!(parse_object(b"[]").unwrap_err(), TokenError::Json);
        assert_eq!(parse_object(b"{} {}").unwrap_err(), TokenError::Json);
        assert_eq!(
            parse_object(b"{\"a\":\"\xff\"}").unwrap_err(),
            TokenError::Json
        );
        assert_eq!(parse_object(b"").unwrap_err(), TokenError::Json);
        assert!(parse_object(b" {\"a\":null} ").is_ok());
    }
}
