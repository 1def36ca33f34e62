//! Administrative commands. Each becomes one [`AdminRequest`], run either on the local store
//! (as the local operator; the server may be running, the store is shared safely between
//! processes) or by the admin API named with `--server` (as the operator, auditor or ISV whose
//! credential is given). Both print the same JSON.

use latch_admin::{execute, AdminError, AdminRequest, Caller, Context};
use latch_store::operations::Admin;
use latch_store::AdminRole;
use serde_json::{json, Value};

use crate::cli::{Command, CredentialCommand, Format};
use crate::config::Config;
use crate::exit;
use crate::output::{self, CliError};

mod audit;
mod remote;
mod requests;
mod text;

pub(crate) use remote::Remote;
use requests::to_request;
use text::text;

impl From<AdminError> for CliError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Unauthorized => CliError::new("Denied", "not authenticated", exit::DENIED),
            AdminError::Forbidden(m) => CliError::new("Denied", m, exit::DENIED),
            AdminError::BadRequest(m) => CliError::usage(m),
            AdminError::NotFound(m) => CliError::new("NotFound", m, exit::NOT_FOUND),
            AdminError::Conflict(m) => CliError::new("AlreadyExists", m, exit::ALREADY_EXISTS),
            AdminError::Unavailable => {
                CliError::new("StoreError", "the store is unavailable", exit::FAILURE)
            }
        }
    }
}

pub(crate) async fn run(
    config: Config,
    command: Command,
    format: Format,
    remote: Option<Result<Remote, CliError>>,
) -> Result<(), CliError> {
    match command {
        Command::Credential(CredentialCommand::Reset { role }) => {
            if remote.is_some() {
                return Err(CliError::usage(
                    "credentials are reset on the local store, not through --server",
                ));
            }
            reset_credential(&config, &role, format).await
        }
        Command::Audit(command) => audit::run(&config, command, format, remote).await,
        command => print_answer(&config, to_request(command)?, format, remote).await,
    }
}

/// Runs `request` (through the admin API with `--server`, else on the local store as the
/// operator) and prints its answer.
async fn print_answer(
    config: &Config,
    request: AdminRequest,
    format: Format,
    remote: Option<Result<Remote, CliError>>,
) -> Result<(), CliError> {
    let value = answer(config, request.clone(), remote.as_ref()).await?;
    output::print(format, &value, || text(&request, &value));
    Ok(())
}

/// The answer to `request`: from the admin API with `--server`, else from the local store.
async fn answer(
    config: &Config,
    request: AdminRequest,
    remote: Option<&Result<Remote, CliError>>,
) -> Result<Value, CliError> {
    match remote {
        Some(Ok(remote)) => remote.send(&request).await,
        Some(Err(e)) => Err(CliError::usage(e.to_string())),
        None => Ok(execute(&local(config).await?, &Caller::LocalOperator, request).await?),
    }
}

pub(crate) async fn local(config: &Config) -> Result<Context, CliError> {
    if config.store.database_url.is_none()
        && !config
            .data_dir
            .join(latch_store::sqlite::FILE_NAME)
            .exists()
    {
        return Err(CliError::new(
            "NotFound",
            format!(
                "no store in {}; run `latch serve` once, pass --data-dir, or use --server",
                config.data_dir.display()
            ),
            exit::NOT_FOUND,
        ));
    }
    crate::store::open_context(config).await
}

async fn reset_credential(config: &Config, role: &str, format: Format) -> Result<(), CliError> {
    let ctx = local(config).await?;
    let role = match role {
        "operator" => AdminRole::Operator,
        _ => AdminRole::Auditor,
    };
    let admin = Admin::new(
        ctx.store,
        ctx.rng,
        ctx.clock,
        latch_core::audit::Actor::LocalOperator,
    );
    let token = admin.reset_admin_credential(role).await?;
    let value = json!({ "role": role.as_str(), "token": token.expose_secret() });
    output::print(format, &value, || {
        format!(
            "{} token reset; the old one no longer works.\ntoken: {}\n(shown this once; only its digest is stored)",
            role.as_str(),
            token.expose_secret()
        )
    });
    Ok(())
}
