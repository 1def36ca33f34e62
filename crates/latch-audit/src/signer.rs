//! The audit key and signed checkpoints.
//!
//! The audit key is an ES256 key of its own, made on first use, kept in a file outside the
//! store and never used for tokens ([`AuditSigner`]). [`checkpoint`] signs the RFC 9162 root of
//! a chain as it stands; the service does so every N records or T seconds
//! ([`CheckpointPolicy`]), also when nothing happened, so that silence is provable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::checkpoint::{Checkpoint, Frontier};
use latch_core::signing::SigningKey;
use latch_core::Clock;
use ring::rand::SecureRandom;

use crate::{AuditError, AuditStore, Result};

/// The audit key's file, in the audit directory.
pub const KEY_FILE: &str = "audit-key.p8";
/// The last signed checkpoint of each chain, in the audit directory.
pub const HEAD_FILE: &str = "audit-head.json";

/// The audit key, and the last checkpoint it signed for each chain.
///
/// Both live in files of their own, never in the store: whoever can write the database can
/// neither read the key nor move the signed head. A new checkpoint is signed only if the log
/// still extends the last one; a log that was cut or rewritten under it is refused, loudly.
pub struct AuditSigner {
    key: SigningKey,
    dir: PathBuf,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("kid", &self.key.kid())
            .field("dir", &self.dir)
            .finish()
    }
}

/// Writes a file readable by its owner only (mode 0600), and syncs it. With `create_new`, an
/// existing file is an error rather than overwritten.
pub fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl AuditSigner {
    /// Opens the audit key in `dir`, making it on first use (with its audit record).
    pub async fn open(
        dir: &Path,
        store: &dyn AuditStore,
        rng: &(dyn SecureRandom + Sync),
        clock: &dyn Clock,
    ) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        let io = |e: std::io::Error| {
            AuditError::Unavailable(format!("audit key {}: {e}", path.display()))
        };
        let key = match std::fs::read(&path) {
            Ok(bytes) => SigningKey::from_pkcs8(&bytes, rng)
                .map_err(|e| AuditError::Corrupt(format!("audit key: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(rng)
                    .map_err(|e| AuditError::Unavailable(e.to_string()))?;
                write_private(&path, key.pkcs8(), true).map_err(io)?;
                let draft = AuditDraft {
                    time: clock.now(),
                    request_id: None,
                    actor: Actor::System,
                    event: AuditEvent::AuditKeyCreated {
                        kid: key.kid().to_owned(),
                    },
                };
                store.record(&draft).await?;
                key
            }
            Err(e) => return Err(io(e)),
        };
        Ok(AuditSigner {
            key,
            dir: dir.to_owned(),
        })
    }

    /// The audit key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn heads(&self) -> Result<BTreeMap<String, Checkpoint>> {
        match std::fs::read_to_string(self.dir.join(HEAD_FILE)) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| AuditError::Corrupt(format!("{HEAD_FILE}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(AuditError::Unavailable(format!("{HEAD_FILE}: {e}"))),
        }
    }

    /// Keeps `cp` as its chain's head unless a larger one is kept already.
    fn remember(&self, cp: &Checkpoint) -> Result<()> {
        let mut heads = self.heads()?;
        if heads
            .get(&cp.chain)
            .is_some_and(|h| (h.size, h.time) >= (cp.size, cp.time))
        {
            return Ok(());
        }
        heads.insert(cp.chain.clone(), cp.clone());
        let text =
            serde_json::to_string_pretty(&heads).map_err(|e| AuditError::Corrupt(e.to_string()))?;
        let tmp = self.dir.join(format!("{HEAD_FILE}.tmp"));
        write_private(&tmp, text.as_bytes(), false)
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(HEAD_FILE)))
            .map_err(|e| AuditError::Unavailable(format!("{HEAD_FILE}: {e}")))
    }

    /// Signs a checkpoint of `frontier` for `chain`, if the tree `check` watched still
    /// extends the signed head; remembers it as the new head.
    pub(crate) fn sign(
        &self,
        chain: &str,
        frontier: &Frontier,
        check: &HeadCheck,
        archived: u64,
        rng: &(dyn SecureRandom + Sync),
        clock: &dyn Clock,
    ) -> Result<Checkpoint> {
        check.verdict(chain, frontier.size(), archived)?;
        self.sign_unchecked(chain, frontier, rng, clock)
    }

    /// Signs a checkpoint of `frontier` for `chain` without checking it against the signed
    /// head: for an archive's records, a prefix of what the head covers.
    pub(crate) fn sign_unchecked(
        &self,
        chain: &str,
        frontier: &Frontier,
        rng: &(dyn SecureRandom + Sync),
        clock: &dyn Clock,
    ) -> Result<Checkpoint> {
        Checkpoint::sign(
            &self.key,
            chain,
            frontier.size(),
            &frontier.root(),
            clock.now(),
            rng,
        )
        .map_err(|e| AuditError::Unavailable(e.to_string()))
    }
}

/// Watches a tree being rebuilt leaf by leaf for the signed head's size, and compares roots.
pub(crate) struct HeadCheck {
    pub(crate) head: Option<Checkpoint>,
    ok: Option<bool>,
}

impl HeadCheck {
    pub(crate) fn new(signer: &AuditSigner, chain: &str) -> Result<Self> {
        Ok(HeadCheck {
            head: signer.heads()?.remove(chain),
            ok: None,
        })
    }

    /// Called with the frontier after each leaf (and once before any).
    pub(crate) fn see(&mut self, frontier: &Frontier) {
        if let Some(h) = &self.head {
            if frontier.size() == h.size {
                self.ok = Some(Some(frontier.root()) == h.root_hash());
            }
        }
    }

    /// For the frontier a writer holds: the log only grew since the signed head; a frontier
    /// that is not at least as large, or of the same size with another root, does not extend
    /// it.
    pub(crate) fn extended(&mut self, frontier: &Frontier) {
        if let Some(h) = &self.head {
            self.ok = match frontier.size().cmp(&h.size) {
                std::cmp::Ordering::Less => None,
                std::cmp::Ordering::Equal => Some(Some(frontier.root()) == h.root_hash()),
                std::cmp::Ordering::Greater => Some(true),
            };
        }
    }

    /// The verdict once the whole tree (of `size` leaves, `archived` of them archived) is seen.
    pub(crate) fn verdict(&self, chain: &str, size: u64, archived: u64) -> Result<()> {
        let Some(h) = &self.head else { return Ok(()) };
        let tampered = |what: &str| {
            tracing::error!(target: "latch::audit", chain, signed = h.size, now = size, "{what}");
            Err(AuditError::Corrupt(format!(
                "chain {chain}: {what} (the last signed checkpoint covers {} records); refusing to sign",
                h.size
            )))
        };
        match self.ok {
            Some(true) => Ok(()),
            Some(false) => tampered(
                "the audit log no longer matches its last signed checkpoint: records were altered",
            ),
            // The head lies inside an archived prefix, whose own checkpoint proves it.
            None if h.size <= archived => Ok(()),
            None => tampered(
                "the audit log is shorter than its last signed checkpoint: records were removed",
            ),
        }
    }
}

/// Signs and stores a checkpoint of `chain` as it stands now, if it still extends the last
/// signed one.
pub async fn checkpoint(
    store: &dyn AuditStore,
    signer: &AuditSigner,
    chain: &str,
    rng: &(dyn SecureRandom + Sync),
    clock: &dyn Clock,
) -> Result<Checkpoint> {
    let mut check = HeadCheck::new(signer, chain)?;
    let (frontier, archived) = match store.audit_frontier(chain).await? {
        // The frontier the chain's writer holds (checked against the signed head when the
        // journal was opened, or taken from PostgreSQL's head row), extended only by records
        // it wrote or read back since.
        Some(frontier) => {
            check.extended(&frontier);
            (frontier, 0)
        }
        None => {
            let mut frontier = archived_frontier(store, chain).await?;
            let archived = frontier.size();
            check.see(&frontier);
            for leaf in store.audit_leaves(chain).await? {
                frontier.push(leaf);
                check.see(&frontier);
            }
            (frontier, archived)
        }
    };
    let cp = signer.sign(chain, &frontier, &check, archived, rng, clock)?;
    store.add_checkpoint(&cp).await?;
    signer.remember(&cp)?;
    Ok(cp)
}

/// Keeps a writer's checkpoints coming: every `every_records` records, or every `every_secs`
/// seconds even when idle.
#[derive(Debug)]
pub struct CheckpointPolicy {
    /// Records between checkpoints.
    pub every_records: u64,
    /// Seconds between checkpoints.
    pub every_secs: i64,
    last: Option<(u64, i64)>,
}

impl CheckpointPolicy {
    /// A policy.
    pub fn new(every_records: u64, every_secs: i64) -> Self {
        CheckpointPolicy {
            every_records: every_records.max(1),
            every_secs: every_secs.max(1),
            last: None,
        }
    }

    /// Makes a checkpoint of `chain` if one is due; returns it.
    pub async fn tick(
        &mut self,
        store: &dyn AuditStore,
        signer: &AuditSigner,
        chain: &str,
        rng: &(dyn SecureRandom + Sync),
        clock: &dyn Clock,
    ) -> Result<Option<Checkpoint>> {
        let head = store.audit_head(chain).await?;
        let now = clock.now().0;
        let due = match self.last {
            None => true,
            Some((size, time)) => {
                head >= size + self.every_records || now >= time + self.every_secs
            }
        };
        if !due {
            return Ok(None);
        }
        let cp = checkpoint(store, signer, chain, rng, clock).await?;
        self.last = Some((cp.size, cp.time.0));
        Ok(Some(cp))
    }
}

/// The Merkle frontier of a chain's archived records (empty if none were archived).
pub(crate) async fn archived_frontier(store: &dyn AuditStore, chain: &str) -> Result<Frontier> {
    match store.audit_archive(chain).await? {
        None => Ok(Frontier::default()),
        Some((through, bytes)) => Frontier::from_bytes(&bytes)
            .filter(|f| f.size() == through)
            .ok_or_else(|| AuditError::Corrupt(format!("the archived frontier of chain {chain}"))),
    }
}
