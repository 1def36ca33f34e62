//! `[audit]`: this process's chain, when it signs checkpoints, how old records are archived, and
//! the embedded store's journal layout.

use super::file::AuditFile;
use super::{ConfigError, Overrides};

/// The audit log's settings.
#[derive(Clone, Debug)]
pub(crate) struct AuditSettings {
    /// This process's audit chain.
    pub(crate) chain: String,
    /// A signed checkpoint after this many records...
    pub(crate) checkpoint_every_records: u64,
    /// ...or this many seconds, also when idle.
    pub(crate) checkpoint_every_secs: i64,
    /// The default age of `latch audit archive`.
    pub(crate) archive_after_days: Option<u32>,
    /// How the embedded store's audit journal is laid out.
    pub(crate) journal: latch_audit::journal::Options,
}

impl AuditSettings {
    pub(super) fn resolve(f: AuditFile, o: &Overrides) -> Result<AuditSettings, ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        let chain = o
            .audit_chain
            .clone()
            .or(f.chain)
            .unwrap_or_else(|| "main".into());
        if chain.is_empty()
            || chain.len() > 64
            || !chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "audit.chain",
                "must be 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        let checkpoint_every_records = f.checkpoint_every_records.unwrap_or(1000);
        let checkpoint_every_secs = f.checkpoint_every_secs.unwrap_or(60);
        if checkpoint_every_records == 0 || !(1..=86_400).contains(&checkpoint_every_secs) {
            return Err(invalid(
                "audit.checkpoint_every_*",
                "records must be at least 1, seconds 1 to 86400".into(),
            ));
        }
        let journal_segment_mib = f.journal_segment_mib.unwrap_or(8);
        if !(1..=1024).contains(&journal_segment_mib) {
            return Err(invalid(
                "audit.journal_segment_mib",
                format!("{journal_segment_mib} is not 1 to 1024"),
            ));
        }
        Ok(AuditSettings {
            chain,
            checkpoint_every_records,
            checkpoint_every_secs,
            archive_after_days: f.archive_after_days,
            journal: latch_audit::journal::Options {
                segment_bytes: journal_segment_mib << 20,
            },
        })
    }
}
