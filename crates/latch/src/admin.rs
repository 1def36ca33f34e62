//! Administrative commands, run against the local store (the server may be running: the store
//! is shared safely between processes). Each change is committed with its audit record.

use std::sync::Arc;

use latch_core::audit::Actor;
use latch_core::{FeatureSet, ResourceId, SystemClock};
use latch_store::admin::Admin;
use latch_store::sqlite::SqliteStore;
use latch_store::{AuthMode, Resource, Store};
use ring::rand::SystemRandom;
use serde_json::{json, Value};

use crate::cli::{
    ApprovalCommand, ClientCommand, Command, Format, IsvCommand, KeysCommand, ResourceCommand,
};
use crate::config::Config;
use crate::output::{self, CliError};

pub(crate) async fn run(config: Config, command: Command, format: Format) -> Result<(), CliError> {
    if !config
        .data_dir
        .join(latch_store::sqlite::FILE_NAME)
        .exists()
    {
        return Err(CliError::new(
            "NotFound",
            format!(
                "no store in {}; run `latch serve` once, or pass --data-dir",
                config.data_dir.display()
            ),
            crate::exit::NOT_FOUND,
        ));
    }
    let rng = Arc::new(SystemRandom::new());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        &config.data_dir,
        &config.audit_chain,
        rng.as_ref(),
    )?);
    let admin = Admin::new(
        store.clone(),
        rng,
        Arc::new(SystemClock),
        Actor::LocalOperator,
    );
    match command {
        Command::Serve(_) => return Err(CliError::usage("serve is not an administrative command")),
        Command::Resource(ResourceCommand::Create { id }) => {
            let id = resource_id(&id)?;
            let (resource, keys) = admin.create_resource(&id).await?;
            let (k1, k2) = (keys.key1.expose_secret(), keys.key2.expose_secret());
            let mut value = resource_json(&resource);
            value["key1"] = json!(k1);
            value["key2"] = json!(k2);
            output::print(format, &value, || {
                format!("created {}\nKey1: {k1}\nKey2: {k2}\n(the keys are shown this once; only their digests are stored)", resource.id)
            });
        }
        Command::Resource(ResourceCommand::List) => {
            let all = store.resources().await?;
            let value = Value::Array(all.iter().map(resource_json).collect());
            output::print(format, &value, || {
                all.iter()
                    .map(|r| r.id.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Resource(ResourceCommand::Show { id }) => {
            let id = resource_id(&id)?;
            let r = store.resource(&id).await?.ok_or_else(|| not_found(&id))?;
            let value = resource_json(&r);
            output::print(format, &value, || resource_text(&r));
        }
        Command::Resource(ResourceCommand::AuthMode { id, mode }) => {
            let id = resource_id(&id)?;
            let mode =
                AuthMode::parse(&mode).ok_or_else(|| CliError::usage("--mode is key or token"))?;
            let r = admin.set_auth_mode(&id, mode).await?;
            output::print(format, &resource_json(&r), || resource_text(&r));
        }
        Command::Keys(KeysCommand::List { id }) => {
            let id = resource_id(&id)?;
            let keys = admin.keys(&id).await?;
            let value = Value::Array(
                keys.iter()
                    .map(|k| json!({ "keyName": k.slot.to_string(), "createdAt": k.created_at.to_rfc3339() }))
                    .collect(),
            );
            output::print(format, &value, || {
                keys.iter()
                    .map(|k| format!("{}  created {}", k.slot, k.created_at.to_rfc3339()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Keys(KeysCommand::Regenerate { id, slot }) => {
            let id = resource_id(&id)?;
            let key = admin.regenerate_key(&id, slot).await?;
            let value = json!({ "id": id.as_str(), "keyName": slot.to_string(), "key": key.expose_secret() });
            output::print(format, &value, || {
                format!(
                    "{slot} of {id} regenerated; the old value no longer works.\n{slot}: {}",
                    key.expose_secret()
                )
            });
        }
        Command::Isv(IsvCommand::Enable { id, grants }) => {
            let id = resource_id(&id)?;
            let grants = features(&grants)?;
            if grants.is_empty() {
                return Err(CliError::usage("give at least one --grant"));
            }
            let r = admin.set_isv(&id, true, &grants).await?;
            output::print(format, &resource_json(&r), || resource_text(&r));
        }
        Command::Isv(IsvCommand::Disable { id }) => {
            let id = resource_id(&id)?;
            let current = store.resource(&id).await?.ok_or_else(|| not_found(&id))?;
            let r = admin.set_isv(&id, false, &current.isv_grants).await?;
            output::print(format, &resource_json(&r), || resource_text(&r));
        }
        Command::Approval(ApprovalCommand::Set {
            id,
            features: names,
        }) => {
            let id = resource_id(&id)?;
            let r = admin.set_approvals(&id, &features(&names)?).await?;
            output::print(format, &resource_json(&r), || resource_text(&r));
        }
        Command::Client(command) => {
            let (isv, client, blocked) = match command {
                ClientCommand::Block { isv, client } => (isv, client, true),
                ClientCommand::Unblock { isv, client } => (isv, client, false),
            };
            let (isv, client) = (resource_id(&isv)?, resource_id(&client)?);
            admin.set_client_blocked(&isv, &client, blocked).await?;
            let value =
                json!({ "isv": isv.as_str(), "client": client.as_str(), "blocked": blocked });
            output::print(format, &value, || {
                let verb = if blocked { "stopped" } else { "resumed" };
                format!("{isv} has {verb} issuing tokens for {client}")
            });
        }
    }
    Ok(())
}

fn resource_id(s: &str) -> Result<ResourceId, CliError> {
    ResourceId::parse(s)
        .map_err(|e| CliError::usage(format!("'{s}' is not a valid resource id: {e}")))
}

fn features(names: &[String]) -> Result<FeatureSet, CliError> {
    FeatureSet::parse(names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()))
        .map_err(|e| CliError::usage(e.to_string()))
}

fn not_found(id: &ResourceId) -> CliError {
    CliError::from(latch_store::StoreError::NotFound(format!("resource {id}")))
}

fn resource_json(r: &Resource) -> Value {
    json!({
        "id": r.id.as_str(),
        "createdAt": r.created_at.to_rfc3339(),
        "isvEnabled": r.isv_enabled,
        "isvGrants": r.isv_grants,
        "approvals": r.approvals,
        "authMode": r.auth_mode.as_str(),
    })
}

fn resource_text(r: &Resource) -> String {
    format!(
        "{}\n  created      {}\n  ISV issuance {}\n  ISV grants   {}\n  approvals    {}\n  auth mode    {}",
        r.id,
        r.created_at.to_rfc3339(),
        if r.isv_enabled { "enabled" } else { "disabled" },
        or_none(&r.isv_grants),
        or_none(&r.approvals),
        r.auth_mode.as_str()
    )
}

fn or_none(f: &FeatureSet) -> String {
    if f.is_empty() {
        "none".into()
    } else {
        f.to_csv()
    }
}
