//! The bytes of a journal segment, parsed and written without I/O.
//!
//! ```text
//! segment   = header (HEADER_BYTES, zero-padded) batch* end? zero*
//! header    = "LATCHJNL" version:u32 first_seq:u64 prev_hash:[32] chain_len:u16 chain
//!             frontier_len:u32 frontier crc32c:u32
//! batch     = ("LBAT" | "LBZ4") count:u32 first_seq:u64 body_len:u32
//!             crc32c(head[..20] ++ body):u32 body
//! end       = "LEND" 0:u32 next_seq:u64 0:u32 crc32c(end[..20]):u32
//! body      = record{count}                       ("LBAT")
//!           | records_len:u32 lz4_block(record{count})  ("LBZ4": packed)
//! record    = len:u32 crc32c(payload):u32 payload
//! ```
//!
//! Integers are little-endian. A payload is a sealed record's body exactly as hashed. A batch
//! whose records compress by an eighth or more is written packed (an LZ4 block): records of one
//! batch repeat the same names, resource ids and keys, so a batch under load takes a fraction
//! of its plain size; a lone record stays plain. The CRC covers the bytes as written. A segment
//! is preallocated with zeros, so the first all-zero batch head is the end of its data. A batch
//! is written and synced as one piece: a crash can leave only the last one torn, which the CRC
//! over the whole batch finds.

use latch_core::checkpoint::Frontier;

/// The first bytes of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"LATCHJNL";
/// The first bytes of every packed batch.
pub const PACKED_MAGIC: &[u8; 4] = b"LBZ4";
/// The first bytes of every plain batch.
pub const BATCH_MAGIC: &[u8; 4] = b"LBAT";
/// The first bytes of the mark that ends a segment: the chain goes on in the next one.
pub const END_MAGIC: &[u8; 4] = b"LEND";
/// The segment format this program writes and reads.
pub const VERSION: u32 = 1;
/// A segment's header, padded: records start at this offset.
pub const HEADER_BYTES: usize = 4096;
/// A batch head.
pub const BATCH_HEAD_BYTES: usize = 24;
/// A record's frame before its payload.
pub const RECORD_HEAD_BYTES: usize = 8;
/// The largest payload of one record.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// The largest body of one batch: also how far past the last good batch a crash can have left
/// bytes, which is what tells a torn tail from damage.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// The longest chain name.
pub const MAX_CHAIN_BYTES: usize = 64;

/// What a segment starts from.
#[derive(Clone, Debug)]
pub struct SegmentHeader {
    /// The chain.
    pub chain: String,
    /// The sequence number of its first record.
    pub first_seq: u64,
    /// The hash of the record before it ([`latch_core::audit::GENESIS`] for the first).
    pub prev_hash: [u8; 32],
    /// The Merkle frontier of every record before it.
    pub frontier: Frontier,
}

/// Why bytes are not what this format says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Too few bytes.
    #[error("ends early")]
    Short,
    /// The magic bytes are wrong.
    #[error("not a journal {0}")]
    Magic(&'static str),
    /// A version this program does not read.
    #[error("format version {0}, this program reads {VERSION}")]
    Version(u32),
    /// A length beyond its bound.
    #[error("{0} length {1} is out of bounds")]
    Length(&'static str, usize),
    /// A checksum does not match.
    #[error("{0} checksum does not match")]
    Checksum(&'static str),
    /// A field does not parse.
    #[error("{0} is malformed")]
    Malformed(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FormatError> {
    let bytes = b.get(at..at + 4).ok_or(FormatError::Short)?;
    Ok(u32::from_le_bytes(
        bytes.try_into().map_err(|_| FormatError::Short)?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, FormatError> {
    let bytes = b.get(at..at + 8).ok_or(FormatError::Short)?;
    Ok(u64::from_le_bytes(
        bytes.try_into().map_err(|_| FormatError::Short)?,
    ))
}

fn usize_of(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl SegmentHeader {
    /// The header's bytes, padded to [`HEADER_BYTES`]; `None` if the chain name is too long.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let chain = self.chain.as_bytes();
        if chain.is_empty() || chain.len() > MAX_CHAIN_BYTES {
            return None;
        }
        let frontier = self.frontier.to_bytes();
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&u16::try_from(chain.len()).ok()?.to_le_bytes());
        out.extend_from_slice(chain);
        out.extend_from_slice(&u32::try_from(frontier.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&frontier);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        if out.len() > HEADER_BYTES {
            return None;
        }
        out.resize(HEADER_BYTES, 0);
        Some(out)
    }

    /// Parses a header from a segment's first bytes.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, FormatError> {
        if b.get(..8).ok_or(FormatError::Short)? != SEGMENT_MAGIC {
            return Err(FormatError::Magic("segment"));
        }
        let version = u32_at(b, 8)?;
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let first_seq = u64_at(b, 12)?;
        let prev_hash: [u8; 32] = b
            .get(20..52)
            .ok_or(FormatError::Short)?
            .try_into()
            .map_err(|_| FormatError::Short)?;
        let chain_len = usize::from(u16::from_le_bytes(
            b.get(52..54)
                .ok_or(FormatError::Short)?
                .try_into()
                .map_err(|_| FormatError::Short)?,
        ));
        if chain_len == 0 || chain_len > MAX_CHAIN_BYTES {
            return Err(FormatError::Length("chain", chain_len));
        }
        let chain = b.get(54..54 + chain_len).ok_or(FormatError::Short)?;
        let chain = std::str::from_utf8(chain).map_err(|_| FormatError::Malformed("chain"))?;
        let at = 54 + chain_len;
        let frontier_len = usize_of(u32_at(b, at)?);
        if frontier_len > HEADER_BYTES {
            return Err(FormatError::Length("frontier", frontier_len));
        }
        let frontier = b
            .get(at + 4..at + 4 + frontier_len)
            .ok_or(FormatError::Short)?;
        let end = at + 4 + frontier_len;
        let crc = u32_at(b, end)?;
        if crc != crc32c::crc32c(&b[..end]) {
            return Err(FormatError::Checksum("segment header"));
        }
        let frontier = Frontier::from_bytes(frontier).ok_or(FormatError::Malformed("frontier"))?;
        if frontier.size().checked_add(1) != Some(first_seq) {
            return Err(FormatError::Malformed("frontier size"));
        }
        Ok(SegmentHeader {
            chain: chain.to_owned(),
            first_seq,
            prev_hash,
            frontier,
        })
    }
}

/// What a batch head position holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Zeros: nothing was written here yet.
    Empty,
    /// A batch.
    Batch(BatchHead),
    /// The segment ends; the chain goes on in the segment starting at this sequence number.
    End(u64),
}

/// The mark that ends a segment whose chain goes on at `next_seq`.
pub fn end_mark(next_seq: u64) -> [u8; BATCH_HEAD_BYTES] {
    let mut out = [0u8; BATCH_HEAD_BYTES];
    out[..4].copy_from_slice(END_MAGIC);
    out[8..16].copy_from_slice(&next_seq.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Parses whatever is at a batch head position.
pub fn mark(b: &[u8]) -> Result<Mark, FormatError> {
    let head = b.get(..BATCH_HEAD_BYTES).ok_or(FormatError::Short)?;
    if &head[..4] == END_MAGIC {
        if u32_at(head, 20)? != crc32c::crc32c(&head[..20])
            || u32_at(head, 4)? != 0
            || u32_at(head, 16)? != 0
        {
            return Err(FormatError::Checksum("segment end"));
        }
        return Ok(Mark::End(u64_at(head, 8)?));
    }
    Ok(match BatchHead::decode(head)? {
        None => Mark::Empty,
        Some(batch) => Mark::Batch(batch),
    })
}

/// Whether `b` starts with a batch's magic: `Some(true)` for a packed batch, `Some(false)` for
/// a plain one, `None` for anything else.
pub fn packed_magic(b: &[u8]) -> Option<bool> {
    match b.get(..4)? {
        m if m == BATCH_MAGIC => Some(false),
        m if m == PACKED_MAGIC => Some(true),
        _ => None,
    }
}

/// A batch head, parsed but not yet checked against its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHead {
    /// How many records.
    pub count: u32,
    /// The first record's sequence number.
    pub first_seq: u64,
    /// The body's length.
    pub body_len: usize,
    /// CRC-32C of the head's first 20 bytes and the body.
    pub crc: u32,
    /// The body is packed (LZ4).
    pub packed: bool,
}

impl BatchHead {
    /// Parses a head; `Ok(None)` for all zeros (the end of a segment's data).
    pub fn decode(b: &[u8]) -> Result<Option<BatchHead>, FormatError> {
        let head = b.get(..BATCH_HEAD_BYTES).ok_or(FormatError::Short)?;
        if head.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let packed = packed_magic(head).ok_or(FormatError::Magic("batch"))?;
        let count = u32_at(head, 4)?;
        let first_seq = u64_at(head, 8)?;
        let body_len = usize_of(u32_at(head, 16)?);
        let crc = u32_at(head, 20)?;
        if count == 0 || body_len > MAX_BATCH_BYTES {
            return Err(FormatError::Length("batch", body_len));
        }
        Ok(Some(BatchHead {
            count,
            first_seq,
            body_len,
            crc,
            packed,
        }))
    }

    /// Checks the CRC over the head and `body`.
    pub fn check(&self, head: &[u8], body: &[u8]) -> Result<(), FormatError> {
        let mut crc = crc32c::crc32c(head.get(..20).ok_or(FormatError::Short)?);
        crc = crc32c::crc32c_append(crc, body);
        if crc == self.crc {
            Ok(())
        } else {
            Err(FormatError::Checksum("batch"))
        }
    }
}

/// The payloads of a batch whose CRC was checked (unpacked first if packed): each record's own
/// CRC is checked too.
pub fn payloads(head: &BatchHead, body: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    let unpacked;
    let body = if head.packed {
        unpacked = unpack(body)?;
        &unpacked[..]
    } else {
        body
    };
    Ok(records(body, head.count)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect())
}

/// The records of a packed body.
fn unpack(body: &[u8]) -> Result<Vec<u8>, FormatError> {
    let len = usize_of(u32_at(body, 0)?);
    if len > MAX_BATCH_BYTES {
        return Err(FormatError::Length("packed batch", len));
    }
    let records = lz4_flex::block::decompress(&body[4..], len)
        .map_err(|_| FormatError::Malformed("packed batch"))?;
    if records.len() != len {
        return Err(FormatError::Malformed("packed batch"));
    }
    Ok(records)
}

/// Builds one batch in memory.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    /// The batch packed, when that is smaller.
    packed: Vec<u8>,
    count: u32,
    first_seq: u64,
}

impl BatchBuilder {
    /// An empty batch whose first record will be `first_seq`.
    pub fn new(first_seq: u64) -> BatchBuilder {
        Self::in_buffer(Vec::new(), first_seq)
    }

    /// An empty batch built in `buffer` (emptied first): a writer reuses one buffer for every
    /// batch rather than allocating one each time.
    pub fn in_buffer(mut buffer: Vec<u8>, first_seq: u64) -> BatchBuilder {
        buffer.clear();
        buffer.resize(BATCH_HEAD_BYTES, 0);
        BatchBuilder {
            bytes: buffer,
            packed: Vec::new(),
            count: 0,
            first_seq,
        }
    }

    /// The buffer, to build the next batch in.
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    /// Appends a record; false (and nothing added) if it is too large or the batch is full.
    pub fn push(&mut self, payload: &[u8]) -> bool {
        let body = self.bytes.len() - BATCH_HEAD_BYTES;
        if payload.len() > MAX_RECORD_BYTES
            || body + RECORD_HEAD_BYTES + payload.len() > MAX_BATCH_BYTES
        {
            return false;
        }
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes
            .extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        self.bytes.extend_from_slice(payload);
        self.count += 1;
        true
    }

    /// How many records.
    pub fn len(&self) -> usize {
        usize_of(self.count)
    }

    /// True when no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes the batch will take in a segment.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// The batch's bytes, head and body: packed if that saves an eighth or more.
    pub fn finish(&mut self) -> &[u8] {
        let records = &self.bytes[BATCH_HEAD_BYTES..];
        let packed = lz4_flex::block::compress(records);
        let packed_len = 4 + packed.len();
        if packed_len + records.len() / 8 <= records.len() {
            let mut out = std::mem::take(&mut self.packed);
            out.clear();
            out.resize(BATCH_HEAD_BYTES, 0);
            out.extend_from_slice(
                &u32::try_from(records.len())
                    .unwrap_or(u32::MAX)
                    .to_le_bytes(),
            );
            out.extend_from_slice(&packed);
            seal_batch(&mut out, PACKED_MAGIC, self.count, self.first_seq);
            self.packed = out;
            return &self.packed;
        }
        seal_batch(&mut self.bytes, BATCH_MAGIC, self.count, self.first_seq);
        &self.bytes
    }
}

/// Writes the head of the batch whose body follows it in `bytes`.
fn seal_batch(bytes: &mut [u8], magic: &[u8; 4], count: u32, first_seq: u64) {
    let body_len = u32::try_from(bytes.len() - BATCH_HEAD_BYTES).unwrap_or(u32::MAX);
    bytes[..4].copy_from_slice(magic);
    bytes[4..8].copy_from_slice(&count.to_le_bytes());
    bytes[8..16].copy_from_slice(&first_seq.to_le_bytes());
    bytes[16..20].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..20]), &bytes[BATCH_HEAD_BYTES..]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// The payloads of a plain batch body whose CRC was checked: each record's own CRC is checked
/// too.
pub fn records(body: &[u8], count: u32) -> Result<Vec<&[u8]>, FormatError> {
    // Each record takes at least its frame head: a count beyond that is not believed.
    let mut out = Vec::with_capacity(usize_of(count).min(body.len() / RECORD_HEAD_BYTES));
    let mut at = 0;
    while at < body.len() {
        let len = usize_of(u32_at(body, at)?);
        if len > MAX_RECORD_BYTES {
            return Err(FormatError::Length("record", len));
        }
        let crc = u32_at(body, at + 4)?;
        let payload = body
            .get(at + RECORD_HEAD_BYTES..at + RECORD_HEAD_BYTES + len)
            .ok_or(FormatError::Short)?;
        if crc32c::crc32c(payload) != crc {
            return Err(FormatError::Checksum("record"));
        }
        out.push(payload);
        at += RECORD_HEAD_BYTES + len;
    }
    if out.len() != usize_of(count) {
        return Err(FormatError::Malformed("record count"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(first_seq: u64) -> SegmentHeader {
        let mut frontier = Frontier::default();
        for i in 1..first_seq {
            frontier.push(latch_core::merkle::leaf_hash(&i.to_le_bytes()));
        }
        SegmentHeader {
            chain: "main".into(),
            first_seq,
            prev_hash: [7; 32],
            frontier,
        }
    }

    #[test]
    fn a_segment_header_reads_back_as_written() {
        let h = header(6);
        let bytes = h.encode().unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES);
        let back = SegmentHeader::decode(&bytes).unwrap();
        assert_eq!(back.chain, "main");
        assert_eq!(back.first_seq, 6);
        assert_eq!(back.prev_hash, [7; 32]);
        assert_eq!(back.frontier.root(), h.frontier.root());
    }

    #[test]
    fn a_damaged_segment_header_is_refused() {
        let bytes = header(3).encode().unwrap();
        for at in [0, 9, 13, 30, 53, 56, 62] {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            assert!(SegmentHeader::decode(&b).is_err(), "byte {at}");
        }
        assert_eq!(
            SegmentHeader::decode(&bytes[..40]).unwrap_err(),
            FormatError::Short
        );
        let long = SegmentHeader {
            chain: "x".repeat(65),
            ..header(1)
        };
        assert!(long.encode().is_none());
    }

    #[test]
    fn a_batch_reads_back_as_written() {
        let mut b = BatchBuilder::new(10);
        assert!(b.push(b"one"));
        assert!(b.push(b""));
        assert!(b.push(&[9u8; 300]));
        let bytes = b.finish().to_vec();
        let head = BatchHead::decode(&bytes).unwrap().unwrap();
        assert_eq!((head.count, head.first_seq), (3, 10));
        let body = &bytes[BATCH_HEAD_BYTES..];
        head.check(&bytes, body).unwrap();
        let r = payloads(&head, body).unwrap();
        assert_eq!(r, vec![b"one".to_vec(), Vec::new(), vec![9u8; 300]]);
    }

    /// Records of one batch that repeat themselves, as usage records of one client do.
    fn alike(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"seq\":{i},\"resource\":\"/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/client\"}}").into_bytes())
            .collect()
    }

    #[test]
    fn a_batch_of_alike_records_is_packed_and_reads_back_as_written() {
        let mut b = BatchBuilder::new(7);
        let written = alike(40);
        for p in &written {
            assert!(b.push(p));
        }
        let plain = b.encoded_len();
        let bytes = b.finish().to_vec();
        assert_eq!(&bytes[..4], PACKED_MAGIC);
        assert!(bytes.len() * 4 < plain, "{} of {plain} bytes", bytes.len());
        let head = BatchHead::decode(&bytes).unwrap().unwrap();
        assert!(head.packed);
        let body = &bytes[BATCH_HEAD_BYTES..];
        head.check(&bytes, body).unwrap();
        assert_eq!(payloads(&head, body).unwrap(), written);

        // A lone short record stays plain: packing would not save an eighth.
        let mut b = BatchBuilder::new(1);
        assert!(b.push(b"{\"seq\":1}"));
        assert_eq!(&b.finish()[..4], BATCH_MAGIC);
    }

    #[test]
    fn a_record_or_batch_over_its_bound_is_not_taken() {
        let mut b = BatchBuilder::new(1);
        assert!(!b.push(&vec![0u8; MAX_RECORD_BYTES + 1]));
        assert!(b.is_empty());
        let big = vec![1u8; MAX_RECORD_BYTES];
        let mut pushed = 0;
        while b.push(&big) {
            pushed += 1;
        }
        assert!(b.encoded_len() <= BATCH_HEAD_BYTES + MAX_BATCH_BYTES);
        assert_eq!(b.len(), pushed);
    }

    #[test]
    fn an_end_mark_names_the_next_segment() {
        assert_eq!(mark(&end_mark(42)).unwrap(), Mark::End(42));
        let mut bad = end_mark(42);
        bad[9] ^= 1;
        assert!(mark(&bad).is_err());
        assert_eq!(mark(&[0u8; 24]).unwrap(), Mark::Empty);
    }

    #[test]
    fn zeros_are_the_end_and_a_bad_head_is_an_error() {
        assert_eq!(BatchHead::decode(&[0u8; 24]).unwrap(), None);
        assert_eq!(
            BatchHead::decode(&[0u8; 10]).unwrap_err(),
            FormatError::Short
        );
        let mut b = BatchBuilder::new(1);
        b.push(b"x");
        let mut bytes = b.finish().to_vec();
        bytes[0] = b'X';
        assert_eq!(
            BatchHead::decode(&bytes).unwrap_err(),
            FormatError::Magic("batch")
        );
    }

    proptest! {
        /// Any change to a batch's bytes is found: by the head's parser, the batch CRC or the
        /// record frames.
        #[test]
        fn every_flipped_bit_of_a_batch_is_found(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut b = BatchBuilder::new(5);
            for p in &payloads {
                prop_assert!(b.push(p));
            }
            let mut bytes = b.finish().to_vec();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let found = match BatchHead::decode(&bytes) {
                Err(_) | Ok(None) => true,
                Ok(Some(head)) => {
                    let body = bytes.get(BATCH_HEAD_BYTES..BATCH_HEAD_BYTES + head.body_len);
                    match body {
                        None => true,
                        Some(body) => head.check(&bytes, body).is_err()
                            || records(body, head.count).is_err()
                            || head.first_seq != 5,
                    }
                }
            };
            prop_assert!(found);
        }

        /// The same of a packed batch: a flipped bit is found by the CRC, the unpacking or the
        /// records' own CRCs.
        #[test]
        fn every_flipped_bit_of_a_packed_batch_is_found(
            n in 2usize..30,
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut b = BatchBuilder::new(5);
            let written = alike(n);
            for p in &written {
                prop_assert!(b.push(p));
            }
            let mut bytes = b.finish().to_vec();
            prop_assert_eq!(&bytes[..4], PACKED_MAGIC);
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let found = match BatchHead::decode(&bytes) {
                Err(_) | Ok(None) => true,
                Ok(Some(head)) => match bytes.get(BATCH_HEAD_BYTES..BATCH_HEAD_BYTES + head.body_len) {
                    None => true,
                    Some(body) => head.check(&bytes, body).is_err()
                        || payloads(&head, body).map_or(true, |p| p != written)
                        || head.first_seq != 5,
                },
            };
            prop_assert!(found);
        }

        /// Arbitrary bytes never panic the parsers.
        #[test]
        fn arbitrary_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), count in any::<u32>()) {
            let _ = SegmentHeader::decode(&bytes);
            let _ = BatchHead::decode(&bytes);
            let _ = records(&bytes, count);
            let packed = BatchHead { count, first_seq: 1, body_len: bytes.len(), crc: 0, packed: true };
            let _ = payloads(&packed, &bytes);
        }
    }
}
