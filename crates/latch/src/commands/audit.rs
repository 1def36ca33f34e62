//! `latch audit ...`: the commands that read the log through an administrative request, and the
//! ones that work on files (verify, prove, a new key) or on the store itself (archive, reindex,
//! export).

use latch_admin::AdminRequest;

use super::remote::Remote;
use super::requests::audit_request;
use super::{answer, local, print_answer};
use crate::cli::{AuditCommand, Format};
use crate::config::Config;
use crate::exit;
use crate::output::CliError;

pub(super) async fn run(
    config: &Config,
    command: AuditCommand,
    format: Format,
    remote: Option<Result<Remote, CliError>>,
) -> Result<(), CliError> {
    match command {
        AuditCommand::NewKey { out } => crate::audit::new_key(&out, format),
        AuditCommand::Verify {
            files,
            key_file,
            checkpoint,
        } => crate::audit::verify(&files, &key_file, checkpoint.as_deref(), format),
        AuditCommand::Prove {
            checkpoint,
            key_file,
            record,
        } => {
            prove(
                config,
                &checkpoint,
                &key_file,
                record,
                format,
                remote.as_ref(),
            )
            .await
        }
        AuditCommand::Archive {
            older_than_days,
            chain,
            out,
        } => {
            on_the_store(&remote, "archiving removes records from the store: run it")?;
            let days = older_than_days
                .or(config.audit.archive_after_days)
                .ok_or_else(|| {
                    CliError::usage("give --older-than-days, or set audit.archive_after_days")
                })?;
            crate::audit::archive(&local(config).await?, chain.as_deref(), days, &out, format).await
        }
        AuditCommand::Reindex => {
            on_the_store(&remote, "the index is rebuilt")?;
            crate::audit::reindex(&local(config).await?, format).await
        }
        AuditCommand::Export {
            chain,
            format: kind,
            out,
        } => match remote {
            Some(remote) => remote?.export(chain.as_deref(), &kind, &out).await,
            None => {
                crate::audit::export_local(&local(config).await?, chain.as_deref(), &kind, &out)
                    .await
            }
        },
        command @ (AuditCommand::Key
        | AuditCommand::Checkpoint { .. }
        | AuditCommand::Query { .. }) => {
            print_answer(config, audit_request(command)?, format, remote).await
        }
    }
}

/// Refuses a command that works on the store itself when `--server` is given.
fn on_the_store(remote: &Option<Result<Remote, CliError>>, what: &str) -> Result<(), CliError> {
    match remote {
        Some(_) => Err(CliError::usage(format!(
            "{what} on the store, not through --server"
        ))),
        None => Ok(()),
    }
}

/// That a saved checkpoint is still in the log (a consistency proof to a fresh one), or that
/// record `record` is in it (an inclusion proof).
async fn prove(
    config: &Config,
    checkpoint: &std::path::Path,
    key_file: &std::path::Path,
    record: Option<u64>,
    format: Format,
    remote: Option<&Result<Remote, CliError>>,
) -> Result<(), CliError> {
    let (saved, key) = crate::audit::read_saved(checkpoint, key_file)?;
    let chain = Some(saved.chain.clone());
    if let Some(seq) = record {
        let request = AdminRequest::InclusionProof {
            chain,
            seq,
            size: Some(saved.size),
        };
        let proof = answer(config, request, remote).await?;
        return crate::audit::prove_included(&saved, seq, &proof, &key, format);
    }
    let fresh = answer(
        config,
        AdminRequest::Checkpoint {
            chain: chain.clone(),
        },
        remote,
    )
    .await?;
    let fresh: latch_core::checkpoint::Checkpoint = serde_json::from_value(fresh)
        .map_err(|e| CliError::new("Failed", e.to_string(), exit::FAILURE))?;
    let request = AdminRequest::ConsistencyProof {
        chain,
        first: saved.size,
        second: Some(fresh.size),
    };
    let proof = answer(config, request, remote).await?;
    crate::audit::prove(&saved, &fresh, &proof, &key, format)
}
