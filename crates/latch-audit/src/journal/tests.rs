use std::os::unix::fs::FileExt;

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::merkle::{leaf_hash, root};
use latch_core::UnixTime;

use latch_core::audit::GENESIS;

use super::format::{BatchBuilder, BATCH_HEAD_BYTES, HEADER_BYTES};
use super::*;

fn draft(n: u64) -> AuditDraft {
    AuditDraft {
        time: UnixTime(1_700_000_000 + i64::try_from(n).unwrap()),
        request_id: Some(format!("req-{n}")),
        actor: Actor::System,
        event: AuditEvent::AuditKeyCreated {
            kid: format!("kid-{n}"),
        },
    }
}

fn drafts(from: u64, n: u64) -> Vec<AuditDraft> {
    (from..from + n).map(draft).collect()
}

const SMALL: Options = Options {
    segment_bytes: 16 * 1024,
};

fn open(dir: &Path) -> Journal {
    Journal::open(dir, "main", SMALL, None).unwrap().0
}

/// Every record body in the directory, in order, read straight from the segment files.
fn bodies(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (_, path) in segments(dir).unwrap() {
        let file = File::open(&path).unwrap();
        let mut offset = HEADER_BYTES as u64;
        loop {
            match read_mark(&file, &path, offset).unwrap().unwrap() {
                Found::Empty | Found::End(_) => break,
                Found::Batch { payloads, len, .. } => {
                    out.extend(payloads.into_iter().map(|p| String::from_utf8(p).unwrap()));
                    offset += len;
                }
            }
        }
    }
    out
}

/// The offset where the batches of the only segment end.
fn data_end(path: &Path) -> u64 {
    let file = File::open(path).unwrap();
    let mut offset = HEADER_BYTES as u64;
    while let Found::Batch { len, .. } = read_mark(&file, path, offset).unwrap().unwrap() {
        offset += len;
    }
    offset
}

#[test]
fn records_are_sealed_in_order_and_the_head_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    let a = j.append(&drafts(1, 3)).unwrap();
    let b = j.append(&drafts(4, 2)).unwrap();
    assert_eq!(
        a.iter().chain(&b).map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let (size, root_before, last) = (j.head().size, j.head().root(), j.head().last_hash);
    drop(j);

    let stored = bodies(dir.path());
    assert_eq!(stored.len(), 5);
    let leaves: Vec<_> = stored.iter().map(|b| leaf_hash(b.as_bytes())).collect();
    assert_eq!(
        root(&leaves),
        root_before,
        "the frontier is the RFC 9162 root"
    );
    assert_eq!(
        a.iter().chain(&b).map(|r| r.leaf).collect::<Vec<_>>(),
        leaves
    );
    assert_eq!(
        verify_chain("main", 1, GENESIS, stored.iter().map(String::as_str)).unwrap(),
        last
    );

    let (j, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 5);
    assert!(recovery.torn.is_none());
    assert_eq!(
        (j.head().size, j.head().root(), j.head().last_hash),
        (size, root_before, last)
    );
}

#[test]
fn segments_roll_over_and_each_carries_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    // Batches of 5 alike records are packed: 200 of them fill several 16 KiB segments.
    for i in 0..200 {
        j.append(&drafts(i * 5 + 1, 5)).unwrap();
    }
    let root_before = j.head().root();
    drop(j);
    let found = segments(dir.path()).unwrap();
    assert!(found.len() > 3, "{} segments", found.len());
    for (first, path) in &found {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap().first_seq, *first);
    }
    assert_eq!(bodies(dir.path()).len(), 1000);
    let (j, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!((recovery.size, j.head().root()), (1000, root_before));
}

#[test]
fn a_torn_last_write_is_set_aside_and_the_journal_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 4)).unwrap();
    let head = j.head().clone();
    // A write of three records that reached the disk only in part.
    let mut batch = BatchBuilder::new(5);
    for d in drafts(5, 3) {
        batch.push(serde_json::to_string(&d.request_id).unwrap().as_bytes());
    }
    let bytes = batch.finish().to_vec();
    let path = segment_path(dir.path(), 1);
    let end = data_end(&path);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&bytes[..bytes.len() / 2], end).unwrap();
    drop((file, j));

    let (mut j, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 4);
    let (kept, n) = recovery.torn.expect("the torn tail is reported");
    assert_eq!(n, bytes.len() / 2);
    assert_eq!(std::fs::read(&kept).unwrap(), &bytes[..bytes.len() / 2]);
    assert_eq!(j.head().root(), head.root());
    // The records after it take the sequence numbers the torn ones never had.
    assert_eq!(j.append(&drafts(5, 1)).unwrap()[0].seq, 5);
    drop(j);
    assert_eq!(bodies(dir.path()).len(), 5);
}

#[test]
fn a_tail_whose_head_was_lost_but_not_its_body_is_torn_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 2)).unwrap();
    let path = segment_path(dir.path(), 1);
    let end = data_end(&path);
    drop(j);
    // Pages written out of order: the head of the last write is zeros, part of its body is not.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"{\"chain\":\"main\"", end + BATCH_HEAD_BYTES as u64 + 8)
        .unwrap();
    drop(file);
    let (_, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 2);
    assert!(recovery.torn.is_some());
}

#[test]
fn an_edited_byte_before_the_last_write_refuses_to_open_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 3)).unwrap();
    // A batch after it: the damage cannot be a torn last write.
    j.append(&drafts(4, 2)).unwrap();
    drop(j);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = HEADER_BYTES + BATCH_HEAD_BYTES + 8 + 30;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::open(dir.path(), "main", SMALL, None).unwrap_err();
    match &err {
        JournalError::Corrupt { offset, seq, .. } => {
            assert_eq!(*offset, HEADER_BYTES as u64);
            assert_eq!(*seq, Some(1));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("record 1"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn damage_to_the_last_batch_a_checkpoint_covers_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 2)).unwrap();
    j.append(&drafts(3, 2)).unwrap();
    let signed = Expected {
        size: 4,
        root: j.head().root(),
    };
    drop(j);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = usize::try_from(data_end(&path)).unwrap();
    bytes[end - 5] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    // Alone, it cannot be told from a torn last write; the signed checkpoint tells.
    let err = Journal::open(dir.path(), "main", SMALL, Some(signed)).unwrap_err();
    assert!(err.to_string().contains("ends at record 2"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "refusing changes nothing"
    );
}

#[test]
fn a_record_rewritten_with_fresh_checksums_breaks_the_chain_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 2)).unwrap();
    j.append(&drafts(3, 2)).unwrap();
    drop(j);
    // Someone rewrites record 3 and recomputes every checksum the format has.
    let path = segment_path(dir.path(), 1);
    let mut bodies = bodies(dir.path());
    bodies[2] = bodies[2].replace("kid-3", "kid-X");
    let mut first = BatchBuilder::new(1);
    let mut second = BatchBuilder::new(3);
    first.push(bodies[0].as_bytes());
    first.push(bodies[1].as_bytes());
    second.push(bodies[2].as_bytes());
    second.push(bodies[3].as_bytes());
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let a = first.finish().to_vec();
    file.write_all_at(&a, HEADER_BYTES as u64).unwrap();
    file.write_all_at(second.finish(), (HEADER_BYTES + a.len()) as u64)
        .unwrap();
    drop(file);
    let err = Journal::open(dir.path(), "main", SMALL, None).unwrap_err();
    // Record 3's own link still holds; record 4's link to it does not.
    assert!(
        matches!(&err, JournalError::Corrupt { seq: Some(4), .. }),
        "{err}"
    );
}

#[test]
fn the_last_signed_checkpoint_must_be_reached_and_matched() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 3)).unwrap();
    let at3 = j.head().root();
    j.append(&drafts(4, 3)).unwrap();
    drop(j);
    let good = Expected { size: 3, root: at3 };
    assert!(Journal::open(dir.path(), "main", SMALL, Some(good)).is_ok());
    let beyond = Expected { size: 9, root: at3 };
    let err = Journal::open(dir.path(), "main", SMALL, Some(beyond)).unwrap_err();
    assert!(err.to_string().contains("ends at record 6"), "{err}");
    let other = Expected {
        size: 3,
        root: [9; 32],
    };
    let err = Journal::open(dir.path(), "main", SMALL, Some(other)).unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
}

#[test]
fn two_writers_on_one_directory_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path());
    let mut admin = open(dir.path());
    let mut seqs = Vec::new();
    for i in 0..30u64 {
        let j = if i % 3 == 0 { &mut admin } else { &mut service };
        seqs.extend(
            j.append(&drafts(i * 4 + 1, 4))
                .unwrap()
                .into_iter()
                .map(|a| a.seq),
        );
    }
    assert_eq!(seqs, (1..=120).collect::<Vec<_>>());
    // Each sees the other's records, across the segments either of them started.
    assert_eq!(admin.refresh().unwrap().size, 120);
    assert_eq!(admin.head().root(), service.refresh().unwrap().root());
    assert!(segments(dir.path()).unwrap().len() > 1);
    drop((service, admin));
    let (_, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 120);
}

#[test]
fn a_segment_ended_by_a_writer_that_died_before_the_next_is_taken_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 2)).unwrap();
    let path = segment_path(dir.path(), 1);
    let end = data_end(&path);
    // The end mark made it to disk; the next segment did not.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&format::end_mark(3), end).unwrap();
    drop((file, j));
    let (mut j, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 2);
    assert_eq!(j.append(&drafts(3, 1)).unwrap()[0].seq, 3);
    assert!(segment_path(dir.path(), 3).exists());
}

#[test]
fn a_segment_of_another_chain_or_a_damaged_header_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 1)).unwrap();
    drop(j);
    let err = Journal::open(dir.path(), "other", SMALL, None).unwrap_err();
    assert!(err.to_string().contains("chain 'main'"), "{err}");
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[25] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::open(dir.path(), "main", SMALL, None).unwrap_err();
    assert!(err.to_string().contains("segment header"), "{err}");
}

#[test]
fn an_unfinished_new_segment_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    j.append(&drafts(1, 1)).unwrap();
    drop(j);
    let tmp = dir.path().join("00000000000000000002.seg.tmp");
    std::fs::write(&tmp, b"half").unwrap();
    let (_, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 1);
    assert!(!tmp.exists());
}

#[test]
fn a_record_too_large_to_frame_is_refused_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    let mut big = draft(1);
    big.request_id = Some("x".repeat(format::MAX_RECORD_BYTES));
    assert!(matches!(
        j.append(&[big]).unwrap_err(),
        JournalError::Invalid(_)
    ));
    assert_eq!(j.append(&drafts(1, 1)).unwrap()[0].seq, 1);
}

#[test]
fn files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("journal");
    let mut j = open(&sub);
    j.append(&drafts(1, 1)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sub), 0o700);
    assert_eq!(mode(&segment_path(&sub, 1)), 0o600);
}

#[test]
fn records_are_read_back_from_any_point_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    for i in 0..30 {
        j.append(&drafts(i * 5 + 1, 5)).unwrap();
    }
    let all = bodies(dir.path());
    for (after, until) in [(0, 150), (0, 1), (37, 38), (41, 120), (149, 150), (10, 10)] {
        let mut got = Vec::new();
        read(dir.path(), after, Some(until), |seq, body| {
            got.push((seq, body.to_owned()));
            Ok(())
        })
        .unwrap();
        let want: Vec<_> = (after + 1..=until)
            .map(|s| (s, all[usize::try_from(s - 1).unwrap()].clone()))
            .collect();
        assert_eq!(got, want, "after {after} until {until}");
    }
    assert_eq!(
        read(dir.path(), 140, Some(151), |_, _| Ok(())).unwrap(),
        150
    );
    let mut seen = 0;
    assert_eq!(
        read(dir.path(), 100, None, |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap(),
        150
    );
    assert_eq!(seen, 50);
    assert_eq!(
        read(dir.path(), 170, None, |_, _| panic!("nothing")).unwrap(),
        150,
        "ends before"
    );
}

#[test]
fn an_append_waits_for_another_holder_of_the_lock_and_then_fails_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    let holder = File::open(dir.path().join("LOCK")).unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let started = std::time::Instant::now();
    let err = j.append(&drafts(1, 1)).unwrap_err();
    assert!(matches!(err, JournalError::Busy(_)), "{err}");
    assert!(started.elapsed() >= LOCK_WAIT);
    drop(holder);
    assert_eq!(
        j.append(&drafts(1, 1)).unwrap()[0].seq,
        1,
        "and goes on once it is free"
    );
}

#[test]
fn a_chain_sealed_elsewhere_moves_in_with_the_same_root() {
    let src = tempfile::tempdir().unwrap();
    let mut j = open(src.path());
    j.append(&drafts(1, 12)).unwrap();
    let (root_then, bodies) = (j.head().root(), bodies(src.path()));
    drop(j);

    // All of it.
    let dir = tempfile::tempdir().unwrap();
    let mut moved = open(dir.path());
    moved.append_sealed(&bodies).unwrap();
    assert_eq!(moved.head().root(), root_then);
    assert_eq!(moved.append(&drafts(13, 1)).unwrap()[0].seq, 13);

    // From record 5, the first four archived away: the journal starts from their frontier.
    let dir = tempfile::tempdir().unwrap();
    let mut frontier = Frontier::default();
    for b in &bodies[..4] {
        frontier.push(leaf_hash(b.as_bytes()));
    }
    let start = Start {
        first_seq: 5,
        prev_hash: latch_core::audit::record_hash(&bodies[3]),
        frontier,
    };
    let (mut moved, _) = Journal::open_from(dir.path(), "main", SMALL, None, start).unwrap();
    moved.append_sealed(&bodies[4..]).unwrap();
    assert_eq!(moved.head().root(), root_then);

    // A record out of its place is refused, and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let mut moved = open(dir.path());
    let mut shuffled = bodies.clone();
    shuffled.swap(2, 3);
    let err = moved.append_sealed(&shuffled).unwrap_err();
    assert!(err.to_string().contains("record 3"), "{err}");
    assert_eq!(moved.refresh().unwrap().size, 0);
}

#[test]
fn a_segment_that_cannot_be_made_fails_the_append_and_the_next_one_tries_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    // Whatever record the next segment starts at, its name is taken by a directory.
    for seq in 2..400 {
        std::fs::create_dir(segment_path(dir.path(), seq)).unwrap();
    }
    let mut appended = 0;
    let err = loop {
        match j.append(&drafts(appended + 1, 1)) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 300, "the segment never filled");
    };
    assert!(matches!(err, JournalError::Io { .. }), "{err}");
    assert!(j.stopped().is_none(), "not a reason to stop");
    for seq in 2..400 {
        std::fs::remove_dir(segment_path(dir.path(), seq)).unwrap();
    }
    let next = j.append(&drafts(appended + 1, 1)).unwrap();
    assert_eq!(next[0].seq, appended + 1);
    drop(j);
    let (_, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, appended + 1);
}

#[test]
fn a_locator_finds_any_record_across_segments_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    for i in 0..30 {
        j.append(&drafts(i * 5 + 1, 5)).unwrap();
    }
    let all = bodies(dir.path());
    let mut locator = Locator::new(dir.path());
    for seq in [1u64, 150, 37, 38, 2, 149, 76, 75] {
        assert_eq!(
            locator.get(seq).unwrap().as_deref(),
            Some(all[usize::try_from(seq - 1).unwrap()].as_str()),
            "record {seq}"
        );
    }
    assert_eq!(locator.get(151).unwrap(), None);
    // Records appended after the locator looked are found too.
    j.append(&drafts(151, 2)).unwrap();
    assert!(locator.get(152).unwrap().unwrap().contains("\"seq\":152"));
}

#[test]
fn archived_segments_are_removed_and_the_rest_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path());
    for i in 0..30 {
        j.append(&drafts(i * 5 + 1, 5)).unwrap();
    }
    let before = segments(dir.path()).unwrap();
    let second = before[1].0;
    // Through the record just before the second segment: the first one goes, no other.
    assert_eq!(remove_through(dir.path(), second - 1).unwrap(), 1);
    let after = segments(dir.path()).unwrap();
    assert_eq!(after.len(), before.len() - 1);
    assert_eq!(after[0].0, second);
    let mut seen = Vec::new();
    read(dir.path(), second - 1, None, |seq, _| {
        seen.push(seq);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.first(), Some(&second));
    assert_eq!(seen.last(), Some(&150));
    // Never the last segment, and the journal goes on.
    assert_eq!(remove_through(dir.path(), 10_000).unwrap(), after.len() - 1);
    assert_eq!(j.append(&drafts(151, 1)).unwrap()[0].seq, 151);
    drop(j);
    let (_, recovery) = Journal::open(dir.path(), "main", SMALL, None).unwrap();
    assert_eq!(recovery.size, 151);
}
