//! The lock of a journal's directory, which orders the processes that write it.

use std::fs::File;
use std::path::Path;

use super::io;
use crate::JournalError;

/// How long an append waits for another process's append to finish before it fails: an
/// append holds the lock for one write and one sync, so only a process that is stuck holds it
/// this long.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The directory's lock, held while it lives.
pub(super) struct Locked<'a>(&'a File);

impl Locked<'_> {
    /// Takes the lock (shared, for reading, or exclusive), waiting at most [`LOCK_WAIT`].
    pub(super) fn take<'a>(
        file: &'a File,
        dir: &Path,
        shared: bool,
    ) -> Result<Locked<'a>, JournalError> {
        use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
        let operation = if shared {
            NonBlockingLockShared
        } else {
            NonBlockingLockExclusive
        };
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            match rustix::fs::flock(file, operation) {
                Ok(()) => return Ok(Locked(file)),
                Err(rustix::io::Errno::WOULDBLOCK) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(10));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(JournalError::Busy(dir.to_owned()))
                }
                Err(e) => return Err(io("cannot lock", dir)(e.into())),
            }
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}
