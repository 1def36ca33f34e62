//! Administrative commands. Each becomes one [`AdminRequest`], run either on the local store
//! (as the local operator; the server may be running, the store is shared safely between
//! processes) or by the admin API named with `--server` (as the operator, auditor or ISV whose
//! credential is given). Both print the same JSON.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use latch_admin::{execute, AdminError, AdminRequest, Caller, Context};
use latch_core::{FeatureSet, ResourceId, SystemClock};
use latch_store::operations::Admin;
use latch_store::AdminRole;
use ring::rand::SystemRandom;
use serde_json::{json, Value};

use crate::cli::{
    ApprovalCommand, AuditCommand, ClientCommand, Command, CredentialCommand, Format, Global,
    IsvCommand, KeysCommand, ResourceCommand, RevokeCommand, SigningKeyCommand,
};
use crate::config::Config;
use crate::exit;
use crate::output::{self, CliError};

/// A TLS client configuration that trusts only the certificates in `path`.
fn client_config(path: &std::path::Path) -> Result<rustls::ClientConfig, CliError> {
    let bad = |e: latch_tls::TlsError| CliError::usage(format!("--cacert {}: {e}", path.display()));
    latch_tls::roots::client_config_with(latch_tls::roots::roots_from_pem_file(path).map_err(bad)?)
        .map_err(bad)
}

/// The admin API to send requests to, and the credential to send.
pub(crate) struct Remote {
    url: String,
    credential: (&'static str, String),
    /// Certificates to trust instead of the web PKI roots.
    cacert: Option<std::path::PathBuf>,
}

impl Remote {
    pub(crate) fn from_flags(g: &Global) -> Option<Result<Remote, CliError>> {
        let url = g.server.clone()?;
        let credential = match (&g.token, &g.key) {
            (Some(token), None) => ("authorization", format!("Bearer {}", token.0)),
            (None, Some(key)) => ("ocp-apim-subscription-key", key.0.clone()),
            _ => {
                return Some(Err(CliError::usage(
                    "with --server, give exactly one of --token and --key",
                )))
            }
        };
        let url = url.trim_end_matches('/').to_owned();
        if crate::tls::plain_http_to_another_host(&url) {
            eprintln!(
                "latch: WARNING: --server {url} is plain HTTP to another host: the credential crosses the network in the clear"
            );
        }
        Some(Ok(Remote {
            url,
            credential,
            cacert: g.cacert.clone(),
        }))
    }

    /// Streams `GET /admin/v1/audit/export` into `out`.
    async fn export(
        &self,
        chain: Option<&str>,
        format: &str,
        out: &std::path::Path,
    ) -> Result<(), CliError> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("format", format);
        if let Some(chain) = chain {
            query.append_pair("chain", chain);
        }
        let (status, body) = self
            .exchange(
                hyper::Method::GET,
                &format!("audit/export?{}", query.finish()),
                None,
            )
            .await?;
        if status != 200 {
            return Err(self.failure(status, &body));
        }
        std::fs::write(out, &body).map_err(|e| {
            CliError::new(
                "Failed",
                format!("cannot write {}: {e}", out.display()),
                exit::FAILURE,
            )
        })?;
        output::line(&format!("latch: export written to {}", out.display()));
        Ok(())
    }

    async fn send(&self, request: &AdminRequest) -> Result<Value, CliError> {
        let body = request.body().to_string();
        let (status, bytes) = self
            .exchange(hyper::Method::POST, &request.op(), Some(body))
            .await?;
        if status == 200 {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        Err(self.failure(status, &bytes))
    }

    async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), CliError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &self.cacert {
            None => builder.with_webpki_roots(),
            Some(path) => builder.with_tls_config(client_config(path)?),
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let mut value = hyper::header::HeaderValue::from_str(&self.credential.1)
            .map_err(|_| CliError::usage("the credential is not a valid header value"))?;
        value.set_sensitive(true);
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}/admin/v1/{path}", self.url))
            .header("content-type", "application/json")
            .header(self.credential.0, value)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CliError::usage(format!("--server: {e}")))?;
        let res = client.request(req).await.map_err(|e| {
            // The cause (a refused connection, an untrusted certificate) is at the chain's end.
            let mut message = format!("cannot reach {}: {e}", self.url);
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            if message.contains("UnknownIssuer") && self.cacert.is_none() {
                message.push_str(
                    " (a development certificate? trust it with --cacert or LATCH_CACERT)",
                );
            }
            CliError::new("Unreachable", message, exit::FAILURE)
        })?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                CliError::new(
                    "Unreachable",
                    format!("reading the answer: {e}"),
                    exit::FAILURE,
                )
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    fn failure(&self, status: u16, body: &[u8]) -> CliError {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("the admin API refused the request")
            .to_owned();
        let (code, exit) = match status {
            401 | 403 => ("Denied", exit::DENIED),
            404 => ("NotFound", exit::NOT_FOUND),
            409 => ("AlreadyExists", exit::ALREADY_EXISTS),
            400 => ("InvalidArgument", 2),
            _ => ("Failed", exit::FAILURE),
        };
        CliError::new(code, message, exit)
    }
}

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
    if let Command::Credential(CredentialCommand::Reset { role }) = &command {
        if remote.is_some() {
            return Err(CliError::usage(
                "credentials are reset on the local store, not through --server",
            ));
        }
        return reset_credential(&config, role, format).await;
    }
    if let Command::Audit(AuditCommand::NewKey { out }) = &command {
        return crate::audit::new_key(out, format);
    }
    if let Command::Audit(AuditCommand::Verify {
        files,
        key_file,
        checkpoint,
    }) = &command
    {
        return crate::audit::verify(files, key_file, checkpoint.as_deref(), format);
    }
    if let Command::Audit(AuditCommand::Prove {
        checkpoint,
        key_file,
        record,
    }) = &command
    {
        let (saved, key) = crate::audit::read_saved(checkpoint, key_file)?;
        let run = |request: AdminRequest| async {
            match &remote {
                Some(Ok(r)) => r.send(&request).await,
                Some(Err(e)) => Err(CliError::usage(e.to_string())),
                None => Ok(execute(&local(&config).await?, &Caller::LocalOperator, request).await?),
            }
        };
        if let Some(seq) = *record {
            let proof = run(AdminRequest::InclusionProof {
                chain: Some(saved.chain.clone()),
                seq,
                size: Some(saved.size),
            })
            .await?;
            return crate::audit::prove_included(&saved, seq, &proof, &key, format);
        }
        let fresh = run(AdminRequest::Checkpoint {
            chain: Some(saved.chain.clone()),
        })
        .await?;
        let fresh: latch_core::checkpoint::Checkpoint = serde_json::from_value(fresh)
            .map_err(|e| CliError::new("Failed", e.to_string(), exit::FAILURE))?;
        let proof = run(AdminRequest::ConsistencyProof {
            chain: Some(saved.chain.clone()),
            first: saved.size,
            second: Some(fresh.size),
        })
        .await?;
        return crate::audit::prove(&saved, &fresh, &proof, &key, format);
    }
    if let Command::Audit(AuditCommand::Archive {
        older_than_days,
        chain,
        out,
    }) = &command
    {
        if remote.is_some() {
            return Err(CliError::usage("archiving removes records from the store: run it on the store, not through --server"));
        }
        let days = older_than_days
            .or(config.audit.archive_after_days)
            .ok_or_else(|| {
                CliError::usage("give --older-than-days, or set audit.archive_after_days")
            })?;
        return crate::audit::archive(&local(&config).await?, chain.as_deref(), days, out, format)
            .await;
    }
    if let Command::Audit(AuditCommand::Reindex) = &command {
        if remote.is_some() {
            return Err(CliError::usage(
                "the index is rebuilt on the store, not through --server",
            ));
        }
        return crate::audit::reindex(&local(&config).await?, format).await;
    }
    if let Command::Audit(AuditCommand::Export {
        chain,
        format: kind,
        out,
    }) = &command
    {
        return match remote {
            Some(remote) => remote?.export(chain.as_deref(), kind, out).await,
            None => {
                crate::audit::export_local(&local(&config).await?, chain.as_deref(), kind, out)
                    .await
            }
        };
    }
    let request = to_request(command)?;
    let value = match remote {
        Some(remote) => remote?.send(&request).await?,
        None => {
            let ctx = local(&config).await?;
            execute(&ctx, &Caller::LocalOperator, request.clone()).await?
        }
    };
    output::print(format, &value, || text(&request, &value));
    Ok(())
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
    let rng = Arc::new(SystemRandom::new());
    let store = crate::store::open(config, &rng).await?;
    let clock = Arc::new(SystemClock);
    // The audit key and signed heads live beside the store, never in it.
    let audit = Arc::new(
        latch_audit::checkpoints::AuditSigner::open(
            &config.data_dir,
            store.as_ref(),
            rng.as_ref(),
            clock.as_ref(),
        )
        .await?,
    );
    Ok(Context {
        store,
        rng,
        clock,
        audit,
    })
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

/// The request a command stands for.
fn to_request(command: Command) -> Result<AdminRequest, CliError> {
    Ok(match command {
        Command::Serve(_)
        | Command::Tls(_)
        | Command::Store(_)
        | Command::FaceModels(_)
        | Command::Credential(_)
        | Command::Audit(AuditCommand::Export { .. })
        | Command::Audit(AuditCommand::Verify { .. })
        | Command::Audit(AuditCommand::NewKey { .. })
        | Command::Audit(AuditCommand::Archive { .. })
        | Command::Audit(AuditCommand::Reindex)
        | Command::Audit(AuditCommand::Prove { .. }) => {
            return Err(CliError::usage("not an administrative request"))
        }
        Command::Audit(AuditCommand::Key) => AdminRequest::AuditKey,
        Command::Audit(AuditCommand::Checkpoint { chain }) => AdminRequest::Checkpoint { chain },
        Command::Audit(AuditCommand::Query {
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
        }) => {
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

fn rid(s: &str) -> Result<ResourceId, CliError> {
    ResourceId::parse(s)
        .map_err(|e| CliError::usage(format!("'{s}' is not a valid resource id: {e}")))
}

fn features(names: &[String]) -> Result<FeatureSet, CliError> {
    FeatureSet::parse(names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()))
        .map_err(|e| CliError::usage(e.to_string()))
}

/// The text form of an answer.
fn text(request: &AdminRequest, v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    match request {
        AdminRequest::CreateResource { .. } => format!(
            "created {}\nKey1: {}\nKey2: {}\n(the keys are shown this once; only their digests are stored)",
            s("id"),
            s("key1"),
            s("key2")
        ),
        AdminRequest::RegenerateKey { .. } => format!(
            "{name} of {id} regenerated; the old value no longer works.\n{name}: {key}",
            name = s("keyName"),
            id = s("id"),
            key = s("key")
        ),
        AdminRequest::ListResources => lines(v, |r| r["id"].as_str().unwrap_or_default().to_owned()),
        AdminRequest::ListKeys { .. } => lines(v, |k| {
            format!("{}  created {}", k["keyName"].as_str().unwrap_or_default(), k["createdAt"].as_str().unwrap_or_default())
        }),
        AdminRequest::ListSigningKeys => lines(v, |k| {
            let retired = k["retiredAt"].as_str().map(|t| format!("  retired {t}, published until {}", k["publishedUntil"].as_str().unwrap_or_default()));
            format!("{}  created {}{}", k["kid"].as_str().unwrap_or_default(), k["createdAt"].as_str().unwrap_or_default(), retired.unwrap_or_else(|| "  (signing)".into()))
        }),
        AdminRequest::RotateSigningKey => format!("{} signs from now on; the old key stays published until its tokens expire", s("kid")),
        AdminRequest::BlockClient { .. } | AdminRequest::UnblockClient { .. } => {
            let verb = if v["blocked"] == json!(true) { "stopped" } else { "resumed" };
            format!("{} has {verb} issuing tokens for {}", s("isv"), s("client"))
        }
        AdminRequest::RevokeToken { .. } | AdminRequest::RevokeTarget { .. } | AdminRequest::RevokeIsv { .. } => {
            format!("revoked: {}", v["revoked"])
        }
        AdminRequest::ShowResource { .. }
        | AdminRequest::SetAuthMode { .. }
        | AdminRequest::EnableIsv { .. }
        | AdminRequest::DisableIsv { .. }
        | AdminRequest::SetApprovals { .. } => resource_text(v),
        AdminRequest::ReadAudit { .. }
        | AdminRequest::AuditKey
        | AdminRequest::Checkpoint { .. }
        | AdminRequest::ConsistencyProof { .. }
        | AdminRequest::InclusionProof { .. } => {
            serde_json::to_string_pretty(v).unwrap_or_default()
        }
        AdminRequest::QueryAudit { .. } => {
            let mut out = lines(&v["records"], crate::audit::record_line);
            if let Some(next) = v["next"].as_i64() {
                out.push_str(&format!("\n(more: --after {next})"));
            }
            out
        }
    }
}

fn lines(v: &Value, line: impl Fn(&Value) -> String) -> String {
    v.as_array()
        .map(|a| a.iter().map(line).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn resource_text(r: &Value) -> String {
    let list = |k: &str| {
        let items: Vec<&str> = r[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(",")
        }
    };
    format!(
        "{}\n  created      {}\n  ISV issuance {}\n  ISV grants   {}\n  approvals    {}\n  auth mode    {}",
        r["id"].as_str().unwrap_or_default(),
        r["createdAt"].as_str().unwrap_or_default(),
        if r["isvEnabled"] == json!(true) { "enabled" } else { "disabled" },
        list("isvGrants"),
        list("approvals"),
        r["authMode"].as_str().unwrap_or_default()
    )
}
