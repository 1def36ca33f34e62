//! A mutational fuzzer for the parsers that face the network, on stable Rust.
//!
//! The targets are in [`latch_core::fuzz`]; each panics only if a property is broken. This
//! driver starts from a seed corpus (the fixtures, and tokens it signs itself), mutates inputs
//! (bit flips, interesting bytes, insertions, deletions, duplications, splices, truncations),
//! runs the target under `catch_unwind`, and keeps an input in the corpus when it reaches an
//! outcome (an error variant) not seen before, so later mutations start from deeper inputs.
//! It is deterministic for a given `--seed`.
//!
//! It is not coverage-guided: it finds what random structure-aware mutation finds. It runs in
//! every test run for a bounded number of iterations, and for as long as wanted by hand:
//! `cargo run --release -p latch-fuzz -- all --iterations 5000000`.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use latch_core::claims::{
    new_jti, AccessClaims, LimitedAccessClaims, LimitedAccessGrant, TokenKind,
};
use latch_core::signing::SigningKey;
use latch_core::{FeatureSet, Lifetime, ResourceId, UnixTime};
use ring::rand::SystemRandom;

/// Which parser to fuzz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// [`latch_core::fuzz::resource_id`].
    ResourceId,
    /// [`latch_core::fuzz::token`].
    Token,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run.
    pub iterations: u64,
    /// Distinct outcomes reached.
    pub outcomes: BTreeSet<String>,
    /// Final corpus size.
    pub corpus: usize,
}

/// An input that broke a property.
#[derive(Debug)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
}

/// xorshift64*: small, fast, deterministic; not for secrets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"/",
    b".",
    b"-",
    b"_",
    b"#",
    b"?",
    b"=",
    b"+",
    b" ",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x80\x8b",
    b"{",
    b"}",
    b"\"",
    b",",
    b":",
    b"[",
    b"]",
    b"null",
    b"0",
    b"-1",
    b"1e999",
    b"A",
    b"z",
    b"subscriptions",
    b"resourceGroups",
    b"providers",
    b"Microsoft.CognitiveServices",
    b"accounts",
    b"eyJ",
    b"\"alg\":\"none\"",
    b"\"kid\":",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                out.splice(at..at, piece.iter().copied());
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let chunk: Vec<u8> = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, chunk);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                // Swap one token-alphabet character for another (keeps base64 shape).
                if len > 0 {
                    const ALPHABET: &[u8] =
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                    let i = rng.below(len);
                    out[i] = ALPHABET[rng.below(ALPHABET.len())];
                }
            }
        }
    }
    out.truncate(max_len);
    out
}

/// The seed corpus of a target; for tokens, also the tokens that must verify.
fn seeds(
    target: Target,
    key: &SigningKey,
    rng: &SystemRandom,
    issuer: &str,
    now: UnixTime,
) -> Vec<Vec<u8>> {
    let ids: Vec<&str> = include_str!("../../../fixtures/resource-ids/valid.txt")
        .lines()
        .chain(
            include_str!("../../../fixtures/resource-ids/invalid.txt")
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.split('\t').next()),
        )
        .collect();
    match target {
        Target::ResourceId => ids.iter().map(|s| s.as_bytes().to_vec()).collect(),
        Target::Token => {
            let target = ResourceId::parse(ids[0]).expect("fixture");
            let isv = ResourceId::parse(ids[2]).expect("fixture");
            let features =
                FeatureSet::parse_csv("Face.Identification,Face.Verification").expect("known");
            let grant = LimitedAccessGrant {
                issuer,
                isv: &isv,
                target: &target,
                features: &features,
                lifetime: Lifetime::DEFAULT,
                region: Some("fuzz"),
            };
            let jti = || new_jti(rng).expect("rng");
            let lat = LimitedAccessClaims::new(&grant, now, jti());
            let at = AccessClaims::new(issuer, &target, None, now, jti());
            vec![
                key.sign(TokenKind::LimitedAccess, &lat, rng)
                    .expect("sign")
                    .into_bytes(),
                key.sign(TokenKind::Access, &at, rng)
                    .expect("sign")
                    .into_bytes(),
            ]
        }
    }
}

/// Runs `iterations` inputs against `target`, starting from `seed`.
pub fn run(target: Target, iterations: u64, seed: u64, max_len: usize) -> Result<Report, Crash> {
    let system = SystemRandom::new();
    let key = SigningKey::generate(&system).expect("key");
    let public = key.public_key();
    let issuer = "urn:latch:fuzz";
    let now = UnixTime(1_800_000_000);
    let mut corpus = seeds(target, &key, &system, issuer, now);
    let minted: BTreeSet<Vec<u8>> = match target {
        Target::Token => corpus.iter().cloned().collect(),
        Target::ResourceId => BTreeSet::new(),
    };
    let mut rng = Rng(seed.max(1));
    let mut report = Report::default();
    let one = |input: &[u8]| -> String {
        match target {
            Target::ResourceId => latch_core::fuzz::resource_id(input),
            Target::Token => match latch_core::fuzz::token(input, &public, issuer, now) {
                Ok(kind) => {
                    assert!(
                        minted.contains(input),
                        "a token the fuzzer did not sign was accepted"
                    );
                    format!("accepted {kind}")
                }
                Err(reason) => reason.to_owned(),
            },
        }
    };
    for input in corpus.clone() {
        let outcome =
            catch_unwind(AssertUnwindSafe(|| one(&input))).map_err(|p| crash(input.clone(), p))?;
        report.outcomes.insert(outcome);
    }
    for _ in 0..iterations {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus, max_len);
        let outcome =
            catch_unwind(AssertUnwindSafe(|| one(&input))).map_err(|p| crash(input.clone(), p))?;
        if report.outcomes.insert(outcome) && corpus.len() < 4096 {
            corpus.push(input);
        }
        report.iterations += 1;
    }
    report.corpus = corpus.len();
    Ok(report)
}

fn crash(input: Vec<u8>, payload: Box<dyn std::any::Any + Send>) -> Crash {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into());
    Crash { input, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_survive_a_short_run() {
        let report = run(Target::ResourceId, 20_000, 7, 2048).unwrap();
        assert_eq!(report.iterations, 20_000);
        assert!(report.outcomes.contains("ok"));
        assert!(report.outcomes.len() > 10, "{:?}", report.outcomes);
    }

    #[test]
    fn tokens_survive_a_short_run() {
        let report = run(Target::Token, 5_000, 11, 8192).unwrap();
        assert!(report.outcomes.contains("accepted limited_access"));
        assert!(
            report.outcomes.contains("bad_signature"),
            "{:?}",
            report.outcomes
        );
        assert!(report.outcomes.contains("malformed"));
    }

    #[test]
    fn a_broken_property_is_reported_with_its_input() {
        let report = catch_unwind(|| latch_core::fuzz::resource_id(b"/subscriptions/x"));
        assert!(report.is_ok(), "a parse error is not a crash");
        let c = crash(b"abc".to_vec(), Box::new("boom".to_owned()));
        assert_eq!(
            (c.input.as_slice(), c.message.as_str()),
            (&b"abc"[..], "boom")
        );
    }

    #[test]
    fn mutation_is_deterministic_for_a_seed() {
        let corpus = vec![b"hello world".to_vec()];
        let a: Vec<_> = {
            let mut r = Rng(3);
            (0..50)
                .map(|_| mutate(&mut r, &corpus[0], &corpus, 64))
                .collect()
        };
        let b: Vec<_> = {
            let mut r = Rng(3);
            (0..50)
                .map(|_| mutate(&mut r, &corpus[0], &corpus, 64))
                .collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|m| m != &corpus[0]));
    }
}
