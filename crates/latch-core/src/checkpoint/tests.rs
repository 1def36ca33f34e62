//! Every tampering the issue names, each named by the verifier; an untouched export verifies.

use ring::rand::SystemRandom;

use super::*;
use crate::audit::SealedRecord;
use crate::audit::{seal, Actor, AuditDraft, AuditEvent};

struct Log {
    key: SigningKey,
    rng: SystemRandom,
    records: Vec<String>,
}

fn log(n: u64) -> Log {
    let rng = SystemRandom::new();
    let key = SigningKey::generate(&rng).unwrap();
    let mut prev = GENESIS;
    let records = (1..=n)
        .map(|seq| {
            let draft = AuditDraft {
                time: UnixTime(1_000 + seq as i64),
                request_id: None,
                actor: Actor::System,
                event: AuditEvent::SigningKeyCreated {
                    kid: format!("key-{seq}"),
                },
            };
            let (body, hash) = seal("main", seq, &prev, &draft);
            prev = hash;
            body
        })
        .collect();
    Log { key, rng, records }
}

impl Log {
    fn checkpoint(&self, size: u64, time: i64) -> Checkpoint {
        let leaves: Vec<Hash> = self.records[..size as usize]
            .iter()
            .map(|r| leaf_hash(r.as_bytes()))
            .collect();
        Checkpoint::sign(
            &self.key,
            "main",
            size,
            &crate::merkle::root(&leaves),
            UnixTime(time),
            &self.rng,
        )
        .unwrap()
    }

    /// Records, then checkpoints at 10 and at the end.
    fn export(&self) -> Vec<String> {
        let mut lines = self.records.clone();
        lines.push(self.checkpoint(10, 2_000).to_line());
        lines.push(self.checkpoint(self.records.len() as u64, 3_000).to_line());
        lines
    }

    fn verify(&self, lines: &[String], saved: Option<&Checkpoint>) -> Vec<Finding> {
        verify_export(lines, &[self.key.public_key()], saved, |_| {}).findings
    }
}

fn main_chain() -> String {
    "main".into()
}

#[test]
fn an_untouched_export_verifies() {
    let l = log(20);
    let report = verify_export(l.export(), &[l.key.public_key()], None, |_| {});
    assert_eq!(report.findings, []);
    assert_eq!(report.records["main"], 20);
    assert_eq!(report.checkpoints, 2);
    // Also against a checkpoint saved earlier.
    assert_eq!(l.verify(&l.export(), Some(&l.checkpoint(10, 2_000))), []);
}

#[test]
fn frontiers_survive_storage_and_continue() {
    let leaves: Vec<Hash> = (0..37).map(|i: i32| leaf_hash(&i.to_be_bytes())).collect();
    let mut f = Frontier::default();
    for leaf in &leaves[..21] {
        f.push(*leaf);
    }
    let mut g = Frontier::from_bytes(&f.to_bytes()).unwrap();
    for leaf in &leaves[21..] {
        g.push(*leaf);
    }
    assert_eq!(g.root(), crate::merkle::root(&leaves));
    assert!(Frontier::from_bytes(&f.to_bytes()[..20]).is_none());
    let mut wrong = f.to_bytes();
    wrong[7] ^= 1;
    assert!(
        Frontier::from_bytes(&wrong).is_none(),
        "size and peaks must agree"
    );
}

#[test]
fn the_frontier_computes_rfc_9162_roots() {
    let leaves: Vec<Hash> = (0..100).map(|i: i32| leaf_hash(&i.to_be_bytes())).collect();
    let mut f = Frontier::default();
    assert_eq!(f.root(), crate::merkle::root(&[]));
    for (i, leaf) in leaves.iter().enumerate() {
        f.push(*leaf);
        assert_eq!(
            f.root(),
            crate::merkle::root(&leaves[..=i]),
            "size {}",
            i + 1
        );
    }
}

#[test]
fn one_flipped_byte_is_named() {
    let l = log(20);
    let mut lines = l.export();
    lines[4] = lines[4].replace("key-5", "kez-5");
    let findings = l.verify(&lines, None);
    assert!(
        findings.contains(&Finding::Altered {
            chain: main_chain(),
            seq: 5
        }),
        "{findings:?}"
    );
    assert!(findings.contains(&Finding::CheckpointMismatch {
        chain: main_chain(),
        size: 10
    }));
    assert!(findings.contains(&Finding::CheckpointMismatch {
        chain: main_chain(),
        size: 20
    }));
}

#[test]
fn the_last_record_altered_is_caught_by_the_checkpoint() {
    let l = log(20);
    let mut lines = l.export();
    lines[19] = lines[19].replace("key-20", "key-21");
    assert_eq!(
        l.verify(&lines, None),
        [Finding::CheckpointMismatch {
            chain: main_chain(),
            size: 20
        }]
    );
}

#[test]
fn a_deleted_record_is_named() {
    let l = log(20);
    let mut lines = l.export();
    lines.remove(6);
    let findings = l.verify(&lines, None);
    assert!(
        findings.contains(&Finding::Missing {
            chain: main_chain(),
            from: 7,
            to: 7
        }),
        "{findings:?}"
    );
}

#[test]
fn two_reordered_records_are_named() {
    let l = log(20);
    let mut lines = l.export();
    lines.swap(2, 3);
    assert_eq!(
        l.verify(&lines, None),
        [Finding::Reordered {
            chain: main_chain(),
            seq: 3
        }]
    );
}

#[test]
fn a_truncated_tail_is_named() {
    let l = log(20);
    let mut lines = l.export();
    lines.drain(15..20);
    let findings = l.verify(&lines, None);
    assert_eq!(
        findings,
        [Finding::Truncated {
            chain: main_chain(),
            size: 20,
            records: 15
        }]
    );
}

#[test]
fn a_truncated_tail_without_its_checkpoint_is_caught_by_the_saved_one() {
    let l = log(20);
    let saved = l.checkpoint(20, 3_000);
    // Cut to 10 records, keep only the (genuine) checkpoint at 10: on its own it verifies...
    let mut lines: Vec<String> = l.records[..10].to_vec();
    lines.push(l.checkpoint(10, 2_000).to_line());
    assert_eq!(l.verify(&lines, None), []);
    // ...but not against the checkpoint the auditor saved: an old checkpoint replayed.
    assert_eq!(
        l.verify(&lines, Some(&saved)),
        [Finding::ReplayedCheckpoint {
            chain: main_chain(),
            size: 10
        }]
    );
}

#[test]
fn a_forged_checkpoint_is_named() {
    let l = log(20);
    let mut lines = l.export();
    let mut forged = l.checkpoint(20, 3_000);
    forged.root = l.checkpoint(10, 3_000).root;
    lines[21] = forged.to_line();
    assert!(l.verify(&lines, None).contains(&Finding::ForgedCheckpoint {
        chain: main_chain(),
        size: 20
    }));
    // Signed by another key, claiming the audit key's id.
    let other = SigningKey::generate(&l.rng).unwrap();
    let mut by_other =
        Checkpoint::sign(&other, "main", 20, &[0; 32], UnixTime(3_000), &l.rng).unwrap();
    by_other.kid = l.key.kid().to_owned();
    lines[21] = by_other.to_line();
    assert!(l.verify(&lines, None).contains(&Finding::ForgedCheckpoint {
        chain: main_chain(),
        size: 20
    }));
}

#[test]
fn a_replayed_old_checkpoint_is_named() {
    // The log has not grown since the auditor saved a checkpoint at 20 records, time 3000; an
    // export that shows an older checkpoint of the same records instead is a replay (idle
    // checkpoints keep coming, so a newer one must exist).
    let l = log(20);
    let saved = l.checkpoint(20, 3_000);
    let mut lines = l.records.clone();
    lines.push(l.checkpoint(20, 2_500).to_line());
    assert_eq!(
        l.verify(&lines, Some(&saved)),
        [Finding::ReplayedCheckpoint {
            chain: main_chain(),
            size: 20
        }]
    );
    // An extra genuine old checkpoint alongside the newest is harmless.
    let mut lines = l.export();
    lines.push(l.checkpoint(10, 2_000).to_line());
    assert_eq!(l.verify(&lines, Some(&saved)), []);
}

#[test]
fn a_rewritten_log_is_caught_by_the_saved_checkpoint() {
    // The same number of records, re-chained and re-checkpointed, but the auditor's saved
    // checkpoint was of the original ones.
    let original = log(20);
    let saved = original.checkpoint(20, 3_000);
    let mut rewritten = log(20);
    rewritten.key = SigningKey::from_pkcs8(original.key.pkcs8(), &original.rng).unwrap();
    rewritten.records[3] = rewritten.records[3].replace("key-4", "key-X");
    let mut prev = GENESIS;
    for r in rewritten.records.iter_mut() {
        let mut rec: SealedRecord = serde_json::from_str(r).unwrap();
        rec.prev_hash = b64url(prev);
        *r = serde_json::to_string(&rec).unwrap();
        prev = record_hash(r);
    }
    let findings = rewritten.verify(&rewritten.export(), Some(&saved));
    assert_eq!(
        findings,
        [Finding::Rewritten {
            chain: main_chain(),
            size: 20
        }]
    );
}

#[test]
fn unreadable_lines_and_unsigned_tails_are_named() {
    let l = log(20);
    let mut lines = l.export();
    lines.insert(5, "not json".into());
    lines.truncate(lines.len() - 1);
    let findings = l.verify(&lines, None);
    assert!(
        findings.contains(&Finding::Unreadable { line: 6 }),
        "{findings:?}"
    );
    assert!(findings.contains(&Finding::Unsigned {
        chain: main_chain(),
        size: 10,
        records: 20
    }));
    assert_eq!(
        findings[0].to_string(),
        "line 6: unreadable (neither a record nor a checkpoint)"
    );
}

#[test]
fn progress_is_reported_on_long_runs() {
    let l = log(3);
    let lines: Vec<String> = std::iter::repeat_n(String::new(), 250_000).collect();
    let mut seen = Vec::new();
    verify_export(&lines, &[l.key.public_key()], None, |n| seen.push(n));
    assert_eq!(seen, [100_000, 200_000]);
}

#[test]
fn hostile_sequence_numbers_cost_nothing_and_never_panic() {
    let l = log(3);
    let mut lines = l.records.clone();
    for seq in [u64::MAX, u64::MAX - 1, 1 << 60, 0] {
        let mut rec: SealedRecord = serde_json::from_str(&l.records[0]).unwrap();
        rec.seq = seq;
        lines.push(serde_json::to_string(&rec).unwrap());
    }
    let findings = l.verify(&lines, None);
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::Missing { from: 4, .. })),
        "{findings:?}"
    );
    assert!(findings.contains(&Finding::Unreadable { line: 4 }));
    assert!(findings.contains(&Finding::Unreadable { line: 7 }));
}

#[test]
fn gaps_split_when_a_late_record_arrives() {
    let mut gaps = BTreeMap::new();
    gaps.insert(3, 9);
    assert!(take_from_gaps(&mut gaps, 5));
    assert_eq!(gaps.into_iter().collect::<Vec<_>>(), [(3, 4), (6, 9)]);
    let mut gaps = BTreeMap::new();
    gaps.insert(3, 3);
    assert!(!take_from_gaps(&mut gaps, 4));
    assert!(take_from_gaps(&mut gaps, 3));
    assert!(gaps.is_empty());
}

mod records {
    //! The records a verification keeps are those a map by sequence number would keep (a later
    //! record with a number already read replacing the earlier one), whatever order they come in.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::{Kept, Records};

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    proptest! {
        #[test]
        fn a_run_keeps_what_a_map_would(
            start in 1u64..4,
            linked in 0usize..40,
            then in proptest::collection::vec((1u64..50, 0u8..6, 0u8..6), 0..12),
        ) {
            let mut records = Records::default();
            let mut model: BTreeMap<u64, Kept> = BTreeMap::new();
            let mut insert = |seq: u64, kept: Kept| {
                records.insert(seq, kept);
                model.insert(seq, kept);
            };
            // A well-linked run first (hash i+10 links to hash i+9), then anything.
            let mut prev = h(0);
            for i in 0..linked {
                let hash = h(i as u8 + 10);
                insert(start + i as u64, (hash, prev, h(i as u8 + 100)));
                prev = hash;
            }
            for (seq, hash, prev) in then {
                insert(seq, (h(hash), h(prev), h(hash ^ 0x80)));
            }
            let kept: Vec<(u64, Kept)> = records.iter().collect();
            let expected: Vec<(u64, Kept)> = model.iter().map(|(&s, &k)| (s, k)).collect();
            prop_assert_eq!(kept, expected);
            prop_assert_eq!(records.last(), model.keys().next_back().copied());
        }
    }

    #[test]
    fn a_long_run_spans_chunks_and_stays_a_run() {
        let mut records = Records::default();
        let mut prev = h(0);
        let n = super::super::CHUNK as u64 * 2 + 3;
        for seq in 1..=n {
            let hash = [(seq % 251) as u8, (seq >> 8) as u8, (seq >> 16) as u8, 1]
                .iter()
                .chain([0u8; 28].iter())
                .copied()
                .collect::<Vec<u8>>()
                .try_into()
                .unwrap();
            records.insert(seq, (hash, prev, h(7)));
            prev = hash;
        }
        assert!(matches!(records, Records::Run { .. }));
        assert_eq!(records.last(), Some(n));
        let mut expected_prev = h(0);
        for (i, (seq, (hash, prev, _))) in records.iter().enumerate() {
            assert_eq!(seq, i as u64 + 1);
            assert_eq!(prev, expected_prev);
            expected_prev = hash;
        }
    }
}
