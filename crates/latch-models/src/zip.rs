//! Reading named files out of a zip archive (a Python wheel), in memory: the central directory
//! says where each file is; stored and deflated files are supported, zip64 is not needed.
//!
//! Only the files asked for are read, each at most its declared size, so an archive can never
//! make a caller write anywhere but where the caller decides, nor inflate without bound.

use std::io::Read;

use crate::FetchError;

const END_OF_DIRECTORY: u32 = 0x0605_4b50;
const DIRECTORY_ENTRY: u32 = 0x0201_4b50;
const LOCAL_HEADER: u32 = 0x0403_4b50;

fn damaged(what: &str) -> FetchError {
    FetchError::Archive(format!("zip: {what}"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, FetchError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| damaged("cut short"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FetchError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| damaged("cut short"))
}

/// The files of `archive` whose paths are in `wanted`, as `(path, contents)`.
pub(crate) fn extract(
    archive: &[u8],
    wanted: &[&str],
) -> Result<Vec<(String, Vec<u8>)>, FetchError> {
    // The end-of-directory record: 22 bytes, then a comment of at most 65,535.
    let earliest = archive.len().saturating_sub(22 + 65_535);
    let end = (earliest..=archive.len().saturating_sub(22))
        .rev()
        .find(|&at| u32_at(archive, at).is_ok_and(|sig| sig == END_OF_DIRECTORY))
        .ok_or_else(|| damaged("no end-of-directory record"))?;
    let entries = usize::from(u16_at(archive, end + 10)?);
    let mut at = u32_at(archive, end + 16)? as usize;
    let mut found = Vec::new();
    for _ in 0..entries {
        if u32_at(archive, at)? != DIRECTORY_ENTRY {
            return Err(damaged("bad directory entry"));
        }
        let method = u16_at(archive, at + 10)?;
        let packed = u32_at(archive, at + 20)? as usize;
        let size = u32_at(archive, at + 24)? as usize;
        let name_len = usize::from(u16_at(archive, at + 28)?);
        let extra_len = usize::from(u16_at(archive, at + 30)?);
        let comment_len = usize::from(u16_at(archive, at + 32)?);
        let local = u32_at(archive, at + 42)? as usize;
        let name = archive
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| damaged("cut short"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        at += 46 + name_len + extra_len + comment_len;
        if !wanted.contains(&name.as_str()) {
            continue;
        }
        if u32_at(archive, local)? != LOCAL_HEADER {
            return Err(damaged("bad local header"));
        }
        let start = local
            + 30
            + usize::from(u16_at(archive, local + 26)?)
            + usize::from(u16_at(archive, local + 28)?);
        let data = archive
            .get(start..start.saturating_add(packed))
            .ok_or_else(|| damaged("file runs past the end"))?;
        let contents = match method {
            0 => data.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(size.min(64 << 20));
                flate2::read::DeflateDecoder::new(data)
                    .take(size as u64)
                    .read_to_end(&mut out)
                    .map_err(|e| damaged(&format!("{name}: {e}")))?;
                out
            }
            other => return Err(damaged(&format!("{name}: compression method {other}"))),
        };
        if contents.len() != size {
            return Err(damaged(&format!("{name}: not its declared size")));
        }
        found.push((name, contents));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of `(name, contents, deflated)` files, written as a zip writer would.
    fn zip(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let (mut out, mut directory) = (Vec::new(), Vec::new());
        for (name, contents, deflated) in files {
            let data = if *deflated {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(contents).unwrap();
                e.finish().unwrap()
            } else {
                contents.to_vec()
            };
            let method: u16 = if *deflated { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(contents.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&data);
            directory.extend_from_slice(&DIRECTORY_ENTRY.to_le_bytes());
            directory.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            directory.extend_from_slice(&method.to_le_bytes());
            directory.extend_from_slice(&[0; 8]);
            directory.extend_from_slice(&(data.len() as u32).to_le_bytes());
            directory.extend_from_slice(&(contents.len() as u32).to_le_bytes());
            directory.extend_from_slice(&(name.len() as u16).to_le_bytes());
            directory.extend_from_slice(&[0; 12]);
            directory.extend_from_slice(&offset.to_le_bytes());
            directory.extend_from_slice(name.as_bytes());
        }
        let dir_at = out.len() as u32;
        out.extend_from_slice(&directory);
        out.extend_from_slice(&END_OF_DIRECTORY.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
        out.extend_from_slice(&dir_at.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn finds_stored_and_deflated_files_by_name_only() {
        let big = vec![b'x'; 10_000];
        let archive = zip(&[
            ("a/one.txt", b"one", false),
            ("a/big.bin", &big, true),
            ("b.txt", b"b", true),
        ]);
        let got = extract(&archive, &["a/big.bin", "a/one.txt", "missing"]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ("a/one.txt".to_owned(), b"one".to_vec()));
        assert_eq!(got[1], ("a/big.bin".to_owned(), big));
    }

    #[test]
    fn damaged_archives_are_errors_not_panics() {
        let archive = zip(&[
            ("a.txt", b"alpha alpha alpha", true),
            ("b.txt", b"beta", false),
        ]);
        assert!(extract(b"", &["a.txt"]).is_err());
        assert!(extract(b"PK\x05\x06", &["a.txt"]).is_err());
        for damaged in crate::damaged_copies(&archive, 3000) {
            let _ = extract(&damaged, &["a.txt", "b.txt"]);
        }
        // A declared size the data does not fill: refused.
        let mut lying = archive.clone();
        let dir_at = u32_at(&lying, lying.len() - 6).unwrap() as usize;
        lying[dir_at + 24] = 200;
        assert!(extract(&lying, &["a.txt"]).is_err());
    }
}
