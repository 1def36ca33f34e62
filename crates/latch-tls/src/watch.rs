//! Noticing that the certificate files were replaced.
//!
//! A renewal (an ACME client, an operator's `cp`) writes two files, not always at once. The
//! watch reports a change only once both files have looked the same for two polls in a row,
//! so a certificate is not read beside the key it is about to replace.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a file looked like: enough to notice a replacement (a rename changes the inode, a
/// rewrite the time or size), without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symbolic links, as ACME clients' `live/` folders use them.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        },
    })
}

/// Watches a certificate file and a key file.
#[derive(Debug)]
pub struct FileWatch {
    paths: [PathBuf; 2],
    /// The stamps of the files in service (or last tried).
    settled: Option<[Option<Stamp>; 2]>,
    /// The stamps seen at the previous poll.
    previous: Option<[Option<Stamp>; 2]>,
}

impl FileWatch {
    /// Starts watching; the files as they are now count as in service.
    pub fn new(certificate: &Path, key: &Path) -> FileWatch {
        let paths = [certificate.to_owned(), key.to_owned()];
        let now = [stamp(&paths[0]), stamp(&paths[1])];
        FileWatch {
            paths,
            settled: Some(now.clone()),
            previous: Some(now),
        }
    }

    /// True when the files changed since they were last settled and have since stood still
    /// for one poll. The caller then tries them, and calls [`FileWatch::settle`] whatever the
    /// outcome, so a bad file is reported once, not at every poll.
    pub fn poll(&mut self) -> bool {
        let now = [stamp(&self.paths[0]), stamp(&self.paths[1])];
        let steady = self.previous.as_ref() == Some(&now);
        self.previous = Some(now.clone());
        steady && self.settled.as_ref() != Some(&now)
    }

    /// Marks the files as they are now as dealt with.
    pub fn settle(&mut self) {
        self.settled = Some([stamp(&self.paths[0]), stamp(&self.paths[1])]);
    }

    /// Forgets what was dealt with: the next steady poll tries the files again (after an
    /// attempt that failed for a reason other than the files, such as the audit log).
    pub fn unsettle(&mut self) {
        self.settled = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_change_once_the_files_stand_still() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "one").unwrap();
        std::fs::write(&key, "one").unwrap();
        let mut watch = FileWatch::new(&cert, &key);
        assert!(!watch.poll(), "nothing changed");

        // A replacement by rename: the inode changes.
        std::fs::write(dir.path().join("next"), "two!").unwrap();
        std::fs::rename(dir.path().join("next"), &cert).unwrap();
        assert!(!watch.poll(), "the key may not have been written yet");
        assert!(watch.poll(), "both files stood still for a poll");
        watch.settle();
        assert!(!watch.poll(), "reported once");

        std::fs::write(&key, "two, longer").unwrap();
        assert!(!watch.poll());
        watch.unsettle();
        assert!(watch.poll(), "an unsettled watch tries again");
    }

    #[test]
    fn a_missing_file_is_a_change_too() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "one").unwrap();
        std::fs::write(&key, "one").unwrap();
        let mut watch = FileWatch::new(&cert, &key);
        std::fs::remove_file(&key).unwrap();
        assert!(!watch.poll());
        assert!(
            watch.poll(),
            "tried, and refused by the loader with a clear message"
        );
    }
}
