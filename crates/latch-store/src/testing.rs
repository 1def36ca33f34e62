//! For the tests of the crates built on the store: real faults to put it in.

use crate::sqlite::SqliteStore;

/// Holds the audit journal's lock from another process (the real `flock` command) for longer
/// than an append waits: every record fails until the returned process is killed.
pub fn hold_the_journal(store: &SqliteStore) -> std::process::Child {
    let dir = store.journal_dir();
    std::fs::create_dir_all(&dir).expect("the journal's directory");
    let holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(dir.join("LOCK"))
        .args(["sleep", "600"])
        .spawn()
        .expect("the flock command");
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder
}
