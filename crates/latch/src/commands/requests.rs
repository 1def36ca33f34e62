//! The administrative request a command stands for.

use latch_admin::AdminRequest;
use latch_core::{FeatureSet, ResourceId};

use crate::cli::{
    ApprovalCommand, AuditCommand, ClientCommand, Command, IsvCommand, KeysCommand,
    ResourceCommand, RevokeCommand, SigningKeyCommand,
};
use crate::output::CliError;

/// The request an administrative command stands for.
pub(super) fn to_request(command: Command) -> Result<AdminRequest, CliError> {
    Ok(match command {
        Command::Serve(_)
        | Command::Tls(_)
        | Command::Store(_)
        | Command::FaceModels(_)
        | Command::Credential(_) => return Err(CliError::usage("not an administrative request")),
        Command::Audit(command) => return audit_request(command),
        Command::Resource(ResourceCommand::Create { id }) => AdminRequest::CreateResource {
            resource_id: rid(&id)?,
        },
        Command::Resource(ResourceCommand::List) => AdminRequest::ListResources,
        Command::Resource(ResourceCommand::Show { id }) => AdminRequest::ShowResource {
            resource_id: rid(&id)?,
        },
        Command::Resource(ResourceCommand::AuthMode { id, mode }) => AdminRequest::SetAuthMode {
            resource_id: rid(&id)?,
            mode,
        },
        Command::Keys(KeysCommand::List { id }) => AdminRequest::ListKeys {
            resource_id: rid(&id)?,
        },
        Command::Keys(KeysCommand::Regenerate { id, slot }) => AdminRequest::RegenerateKey {
            resource_id: rid(&id)?,
            key_name: slot.to_string(),
        },
        Command::Isv(IsvCommand::Enable { id, grants }) => AdminRequest::EnableIsv {
            resource_id: rid(&id)?,
            grants: features(&grants)?,
        },
        Command::Isv(IsvCommand::Disable { id }) => AdminRequest::DisableIsv {
            resource_id: rid(&id)?,
        },
        Command::Approval(ApprovalCommand::Set {
            id,
            features: names,
        }) => AdminRequest::SetApprovals {
            resource_id: rid(&id)?,
            features: features(&names)?,
        },
        Command::Client(ClientCommand::Block { isv, client }) => AdminRequest::BlockClient {
            isv_resource_id: isv.as_deref().map(rid).transpose()?,
            client_resource_id: rid(&client)?,
        },
        Command::Client(ClientCommand::Unblock { isv, client }) => AdminRequest::UnblockClient {
            isv_resource_id: isv.as_deref().map(rid).transpose()?,
            client_resource_id: rid(&client)?,
        },
        Command::Revoke(RevokeCommand::Token { jti }) => AdminRequest::RevokeToken { jti },
        Command::Revoke(RevokeCommand::Target { id, before }) => AdminRequest::RevokeTarget {
            target_resource_id: rid(&id)?,
            before,
        },
        Command::Revoke(RevokeCommand::Isv { id, before }) => AdminRequest::RevokeIsv {
            isv_resource_id: rid(&id)?,
            before,
        },
        Command::SigningKey(SigningKeyCommand::Rotate) => AdminRequest::RotateSigningKey,
        Command::SigningKey(SigningKeyCommand::List) => AdminRequest::ListSigningKeys,
    })
}

/// The request an audit command that reads the log stands for.
pub(super) fn audit_request(command: AuditCommand) -> Result<AdminRequest, CliError> {
    Ok(match command {
        AuditCommand::Export { .. }
        | AuditCommand::Verify { .. }
        | AuditCommand::NewKey { .. }
        | AuditCommand::Archive { .. }
        | AuditCommand::Reindex
        | AuditCommand::Prove { .. } => {
            return Err(CliError::usage("not an administrative request"))
        }
        AuditCommand::Key => AdminRequest::AuditKey,
        AuditCommand::Checkpoint { chain } => AdminRequest::Checkpoint { chain },
        AuditCommand::Query {
            chain,
            isv,
            target,
            jti,
            kind,
            outcome,
            operation,
            feature,
            from,
            to,
            after,
            limit,
        } => {
            AdminRequest::QueryAudit {
                chain,
                isv_resource_id: isv.as_deref().map(rid).transpose()?,
                target_resource_id: target.as_deref().map(rid).transpose()?,
                jti,
                kind,
                outcome,
                operation,
                feature: feature.as_deref().map(str::parse).transpose().map_err(
                    |e: latch_core::feature::UnknownFeature| CliError::usage(e.to_string()),
                )?,
                from,
                to,
                after,
                limit,
            }
        }
    })
}

fn rid(s: &str) -> Result<ResourceId, CliError> {
    ResourceId::parse(s)
        .map_err(|e| CliError::usage(format!("'{s}' is not a valid resource id: {e}")))
}

fn features(names: &[String]) -> Result<FeatureSet, CliError> {
    FeatureSet::parse(names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()))
        .map_err(|e| CliError::usage(e.to_string()))
}
