//! ES256 signing keys, their `kid`s, and the JWKS that publishes them.
//!
//! Keys are P-256 key pairs held by *ring*. The private key exists outside *ring* only as the
//! PKCS#8 document that the store keeps ([`SigningKey::pkcs8`]), in a zeroizing buffer.
//!
//! The `kid` is the key's RFC 7638 JWK thumbprint, so it is derived, stable and collision-free.
//!
//! Nonces: *ring* derives each ECDSA nonce from the private key, the message digest and fresh
//! randomness. RFC 8725 §3.2 asks for RFC 6979 deterministic nonces to survive a broken random
//! number generator; this hedged construction survives that too, and also resists the fault
//! attacks that purely deterministic nonces invite.

use ring::rand::SecureRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::claims::TokenKind;
use crate::jws::b64url;

/// The only signature algorithm we issue or accept.
pub const ALG: &str = "ES256";

/// A signing failure: a bad PKCS#8 document, or the random number generator failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The stored key is not a P-256 PKCS#8 document.
    #[error("the signing key is not a valid P-256 PKCS#8 document")]
    BadKey,
    /// The system random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// A private ES256 key with its `kid`.
pub struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, SignError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(|_| SignError::Random)?;
        Self::from_pkcs8(doc.as_ref(), rng)
    }

    /// Loads a key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<Self, SignError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, rng)
            .map_err(|_| SignError::BadKey)?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Ok(SigningKey {
            kid: public.kid,
            pair,
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The PKCS#8 document, for the store only.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs raw bytes: a 64-byte `r || s` ECDSA P-256 SHA-256 signature (for checkpoints).
    pub fn sign_bytes(&self, message: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, SignError> {
        self.pair
            .sign(rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignError::Random)
    }

    /// Signs `claims` as a compact JWS of the given kind.
    pub fn sign<C: Serialize>(
        &self,
        kind: TokenKind,
        claims: &C,
        rng: &dyn SecureRandom,
    ) -> Result<String, SignError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'static str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: ALG,
            typ: kind.typ(),
            kid: &self.kid,
        })
        .map_err(|_| SignError::BadKey)?;
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::BadKey)?;
        let mut token = b64url(header);
        token.push('.');
        token.push_str(&b64url(payload));
        let sig = self
            .pair
            .sign(rng, token.as_bytes())
            .map_err(|_| SignError::Random)?;
        token.push('.');
        token.push_str(&b64url(sig.as_ref()));
        Ok(token)
    }
}

/// A public ES256 key: the uncompressed P-256 point and its `kid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    point: Vec<u8>,
}

impl PublicKey {
    /// A public key from its uncompressed SEC1 point (65 bytes, `0x04 || x || y`).
    pub fn from_point(point: &[u8]) -> Result<Self, SignError> {
        if point.len() != 65 || point[0] != 4 {
            return Err(SignError::BadKey);
        }
        let (x, y) = (b64url(&point[1..33]), b64url(&point[33..]));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64url(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Ok(PublicKey {
            kid,
            point: point.to_vec(),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The uncompressed point.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// A public key from its JWK (`kty` `EC`, `crv` `P-256`, `x`, `y`), as [`PublicKey::to_jwk`]
    /// writes it; `None` for anything else.
    pub fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
            return None;
        }
        let coord = |k: &str| {
            crate::jws::b64url_decode(jwk[k].as_str()?)
                .ok()
                .filter(|b| b.len() == 32)
        };
        let mut point = vec![4u8];
        point.extend(coord("x")?);
        point.extend(coord("y")?);
        Self::from_point(&point).ok()
    }

    /// The key as a JWK.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "EC",
            crv: "P-256",
            alg: ALG,
            key_use: "sig",
            kid: self.kid.clone(),
            x: b64url(&self.point[1..33]),
            y: b64url(&self.point[33..]),
        }
    }
}

/// One public key in JWK form (RFC 7517, RFC 7518 §6.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// `EC`.
    pub kty: &'static str,
    /// `P-256`.
    pub crv: &'static str,
    /// `ES256`: each key is used with exactly one algorithm.
    pub alg: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: &'static str,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// The x coordinate.
    pub x: String,
    /// The y coordinate.
    pub y: String,
}

/// A JWK set: every public key whose tokens may still be valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The set of the given keys.
    pub fn of<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        Jwks {
            keys: keys.into_iter().map(PublicKey::to_jwk).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 has no P-256 vector; check the construction against an independent
        // computation over the JWK members.
        let rng = SystemRandom::new();
        let key = SigningKey::generate(&rng).unwrap();
        let jwk = key.public_key().to_jwk();
        let json = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            jwk.crv, jwk.kty, jwk.x, jwk.y
        );
        assert_eq!(
            jwk.kid,
            b64url(ring::digest::digest(&ring::digest::SHA256, json.as_bytes()))
        );
        assert_eq!(jwk.kid.len(), 43);
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_kid() {
        let rng = SystemRandom::new();
        let key = SigningKey::generate(&rng).unwrap();
        let again = SigningKey::from_pkcs8(key.pkcs8(), &rng).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_eq!(
            SigningKey::from_pkcs8(b"nonsense", &rng).unwrap_err(),
            SignError::BadKey
        );
    }

    #[test]
    fn debug_hides_the_private_key() {
        let rng = SystemRandom::new();
        let key = SigningKey::generate(&rng).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.kid()));
        let der = format!("{:?}", key.pkcs8());
        assert!(!shown.contains(&der[1..40]), "no bytes of the private key");
        assert!(!shown.contains(&b64url(key.pkcs8())[..20]));
    }

    #[test]
    fn jwks_round_trip_and_nothing_else_parses() {
        let rng = SystemRandom::new();
        let key = SigningKey::generate(&rng).unwrap().public_key();
        let jwk = serde_json::to_value(key.to_jwk()).unwrap();
        assert_eq!(PublicKey::from_jwk(&jwk), Some(key));
        for (field, value) in [("crv", "P-384"), ("kty", "RSA"), ("x", "AAAA")] {
            let mut bad = jwk.clone();
            bad[field] = serde_json::json!(value);
            assert_eq!(PublicKey::from_jwk(&bad), None, "{field}");
        }
    }

    #[test]
    fn public_points_are_checked() {
        assert!(PublicKey::from_point(&[4u8; 64]).is_err());
        let mut p = [0u8; 65];
        p[0] = 2;
        assert!(PublicKey::from_point(&p).is_err());
    }
}
