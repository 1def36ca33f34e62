//! Subscription keys and their digests.
//!
//! A key exists in plaintext only twice: in the answer that creates or regenerates it, and in
//! the request that presents it. The store keeps `HMAC-SHA256(pepper, key)`; a request's key is
//! digested with the same pepper, looked up by digest, and the match is confirmed with
//! `ring::hmac::verify`, which compares in constant time.
//!
//! [`SubscriptionKey`] has no `Display`, a `Debug` that prints nothing of the key, and zeroes its
//! memory on drop. Presented keys are not checked for length or alphabet (newer Azure keys are
//! longer than the 32 hex digits of older ones); they are only digested.

use std::fmt;

use ring::hmac;
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

/// A subscription key in plaintext.
pub struct SubscriptionKey(Zeroizing<String>);

impl SubscriptionKey {
    /// A new random key: 256 bits, 64 lowercase hexadecimal digits.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, ring::error::Unspecified> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill(bytes.as_mut())?;
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in bytes.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        Ok(SubscriptionKey(s))
    }

    /// The plaintext, for the one answer that shows it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubscriptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubscriptionKey(<redacted>)")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The server's key-digest pepper: an HMAC-SHA256 key.
pub struct Pepper(hmac::Key);

impl Pepper {
    /// A pepper from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Pepper(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The digest under which a presented key is looked up.
    pub fn digest(&self, presented: &[u8]) -> KeyDigest {
        let tag = hmac::sign(&self.0, presented);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        KeyDigest(out)
    }

    /// Whether `presented` is the key whose digest is `stored`, compared in constant time.
    pub fn matches(&self, presented: &[u8], stored: &KeyDigest) -> bool {
        hmac::verify(&self.0, presented, &stored.0).is_ok()
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

/// `HMAC-SHA256(pepper, key)`: what the store keeps instead of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// Lowercase hexadecimal.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not the key, but it is a lookup handle; show only a prefix.
        write!(f, "KeyDigest({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn keys_are_random_hex_and_never_debug_printed() {
        let rng = SystemRandom::new();
        let a = SubscriptionKey::generate(&rng).unwrap();
        let b = SubscriptionKey::generate(&rng).unwrap();
        assert_eq!(a.expose_secret().len(), 64);
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }

    #[test]
    fn digests_depend_on_pepper_and_key() {
        let p1 = Pepper::from_bytes(&[1; 32]);
        let p2 = Pepper::from_bytes(&[2; 32]);
        let d = p1.digest(b"key");
        assert!(p1.matches(b"key", &d));
        assert!(!p1.matches(b"kez", &d));
        assert!(!p1.matches(b"key ", &d));
        assert!(!p2.matches(b"key", &d));
        assert_ne!(p1.digest(b"key"), p2.digest(b"key"));
        assert_eq!(d.to_hex().len(), 64);
        assert!(format!("{d:?}").len() < 24);
    }
}
