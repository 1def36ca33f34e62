//! Reading named files out of a tar archive (ustar, with PAX `path` records), in memory.
//!
//! Only regular files are returned; links, directories and device entries are skipped, so an
//! archive can never make a caller write anywhere but where the caller decides.

use crate::FetchError;

const BLOCK: usize = 512;

/// The regular files of `archive` whose paths are in `wanted`, as `(path, contents)`.
pub(crate) fn extract<'a>(
    archive: &'a [u8],
    wanted: &[&str],
) -> Result<Vec<(String, &'a [u8])>, FetchError> {
    let mut found = Vec::new();
    let mut at = 0;
    let mut pax_path: Option<String> = None;
    while at + BLOCK <= archive.len() {
        let header = &archive[at..at + BLOCK];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        if !checksum_ok(header) {
            return Err(FetchError::Archive(format!("bad header checksum at {at}")));
        }
        let size = octal(&header[124..136])
            .ok_or_else(|| FetchError::Archive(format!("bad size field at {at}")))?;
        let start = at + BLOCK;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|&e| e <= archive.len())
            .ok_or_else(|| FetchError::Archive(format!("entry at {at} runs past the end")))?;
        let body = &archive[start..end];
        let kind = header[156];
        match kind {
            b'x' => pax_path = pax_record(body, "path"),
            b'0' | 0 => {
                let path = match pax_path.take() {
                    Some(p) => p,
                    None => ustar_path(header),
                };
                if wanted.contains(&path.as_str()) {
                    found.push((path, body));
                }
            }
            _ => pax_path = None,
        }
        at = start + size.div_ceil(BLOCK as u64) as usize * BLOCK;
    }
    Ok(found)
}

fn checksum_ok(header: &[u8]) -> bool {
    let Some(stored) = octal(&header[148..156]) else {
        return false;
    };
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

/// A NUL- or space-terminated octal field.
fn octal(field: &[u8]) -> Option<u64> {
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if digits.is_empty() || digits.len() > 21 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        (b'0'..=b'7')
            .contains(&d)
            .then(|| n * 8 + u64::from(d - b'0'))
    })
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn ustar_path(header: &[u8]) -> String {
    let name = c_string(&header[0..100]);
    let prefix = if &header[257..262] == b"ustar" {
        c_string(&header[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// The value of `key` in a PAX extended header ("<len> key=value\n" records).
fn pax_record(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        let (k, v) = record.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        let size_field = format!("{size:011o}");
        h[124..135].copy_from_slice(size_field.as_bytes());
        h[156] = kind;
        h[257..262].copy_from_slice(b"ustar");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn entry(name: &str, body: &[u8], kind: u8) -> Vec<u8> {
        let mut out = header(name, body.len(), kind);
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[test]
    fn finds_the_wanted_files_only() {
        let mut archive = entry("pkg/a.txt", b"alpha", b'0');
        archive.extend(entry("pkg/link", b"", b'2'));
        archive.extend(entry("pkg/b.bin", &[7u8; 700], b'0'));
        archive.extend(vec![0u8; 2 * BLOCK]);
        let got = extract(&archive, &["pkg/b.bin", "pkg/link", "missing"]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "pkg/b.bin");
        assert_eq!(got[0].1, &[7u8; 700][..]);
    }

    #[test]
    fn pax_path_names_the_next_file() {
        let long = "pkg/a/very/long/path/name.jpg";
        let record = format!("{} path={long}\n", 6 + long.len() + 6);
        let mut archive = entry("PaxHeader", record.as_bytes(), b'x');
        archive.extend(entry("short.jpg", b"jpeg", b'0'));
        let got = extract(&archive, &[long]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"jpeg");
    }

    #[test]
    fn damaged_archives_are_errors_not_panics() {
        let good = entry("pkg/a.txt", b"alpha", b'0');
        let mut bad_sum = good.clone();
        bad_sum[0] = b'q';
        assert!(extract(&bad_sum, &["pkg/a.txt"]).is_err());
        let mut huge = header("pkg/a.txt", 0, b'0');
        huge[124..135].copy_from_slice(b"77777777777");
        let sum: u32 = huge
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        huge[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(extract(&huge, &["pkg/a.txt"]).is_err());
        for damaged in crate::damaged_copies(&good, 2000) {
            let _ = extract(&damaged, &["pkg/a.txt"]);
        }
    }
}
