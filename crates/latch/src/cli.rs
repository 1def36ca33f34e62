//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;

/// latch: a security token service for limited access features.
#[derive(Debug, Parser)]
#[command(name = "latch", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The environment's settings, then the flags' (which win over both the environment and
    /// the file).
    pub(crate) fn overrides(&self) -> Overrides {
        fn flag<T: Clone>(given: &Option<T>, setting: &mut Option<T>) {
            if given.is_some() {
                setting.clone_from(given);
            }
        }
        let mut o = Overrides::from_environment();
        flag(&self.global.data_dir, &mut o.data_dir);
        if let Command::Serve(args) = &self.command {
            flag(&args.sts_listen, &mut o.sts_listen);
            flag(&args.face_listen, &mut o.face_listen);
            flag(&args.admin_listen, &mut o.admin_listen);
            flag(&args.metrics_listen, &mut o.metrics_listen);
            flag(&args.tls, &mut o.tls_mode);
            flag(&args.tls_cert, &mut o.tls_cert);
            flag(&args.tls_key, &mut o.tls_key);
            flag(&args.tls_cname, &mut o.tls_cname);
            if args.no_demo {
                o.demo = Some(false);
            }
        }
        o
    }
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Configuration file (TOML; unknown keys are refused).
    #[arg(long, global = true, env = "LATCH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, global = true, env = "LATCH_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
    /// Same as `-o json`.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// The admin API to send the command to (e.g. http://127.0.0.1:8702); without it, the
    /// command runs on the local store as the operator.
    #[arg(long, global = true, env = "LATCH_ADMIN_URL")]
    pub(crate) server: Option<String>,
    /// The operator or auditor token, with --server (prefer the environment variable: a flag
    /// is visible to other users in the process list).
    #[arg(long, global = true, env = "LATCH_ADMIN_TOKEN", hide_env_values = true, value_parser = secret)]
    pub(crate) token: Option<Secret>,
    /// Trust only the certificates in this PEM file for --server (as curl's --cacert), e.g. a
    /// development certificate; without it, the usual web PKI roots.
    #[arg(long, global = true, env = "LATCH_CACERT")]
    pub(crate) cacert: Option<PathBuf>,
    /// An ISV's resource key, with --server (an ISV manages its own keys, blocks and tokens).
    #[arg(long, global = true, env = "LATCH_ADMIN_KEY", hide_env_values = true, value_parser = secret)]
    pub(crate) key: Option<Secret>,
}

impl Global {
    pub(crate) fn output(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output
        }
    }
}

/// The services `serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The STS, the Face front and the admin API, on three listeners.
    All,
    /// The admin API only.
    Admin,
    /// The STS only.
    Sts,
    /// The Face front only.
    Face,
}

/// A credential given on the command line: never printed by `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_owned()))
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Lines for people.
    Text,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the token service.
    Serve(ServeArgs),
    /// Create, list and show resources.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// List and regenerate a resource's two keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Enable or disable an ISV's right to issue limited access tokens, and what it may grant.
    #[command(subcommand)]
    Isv(IsvCommand),
    /// Set the Limited Access features approved for a resource directly.
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// Stop or resume an ISV's issuance for one client.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Revoke issued limited access tokens; the Face front refuses them from then on.
    #[command(subcommand)]
    Revoke(RevokeCommand),
    /// Rotate and list the token signing keys.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// Reset the operator or auditor token of the admin API (local store only); prints it once.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Query, export and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Make a development certificate, or check the configured one before serving it.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// The shared (PostgreSQL) store's schema.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The built-in Face engine's weights, fetched ahead of time (for a machine that will run
    /// offline, or a container image).
    #[command(subcommand)]
    FaceModels(FaceModelsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum FaceModelsCommand {
    /// Fetch the weights from the npm registry into a directory, or check the ones there
    /// against their pinned digests; `serve` then starts without the network
    /// (`face.models_dir`).
    Fetch {
        /// The directory (default: `face.models_dir`, else `<data_dir>/models`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Apply pending migrations and exit (`serve` also applies them when it starts).
    Migrate,
    /// Say whether migrations are pending (exit 1 if so).
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Write a self-signed certificate and key (cert.pem, key.pem) for a name: for development
    /// only, since no client trusts it unless told to.
    SelfSigned {
        /// The host name (or IP address) clients will use.
        #[arg(long)]
        cname: String,
        /// The folder to write to (existing files are not overwritten).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Days of validity.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Run the checks `serve` runs on the configured certificate, key and cname (also before a
    /// renewal), and show the certificate.
    Check,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Records matching every filter given, oldest first, a page at a time.
    Query {
        /// One chain.
        #[arg(long)]
        chain: Option<String>,
        /// The ISV involved.
        #[arg(long)]
        isv: Option<String>,
        /// The client (target) resource.
        #[arg(long)]
        target: Option<String>,
        /// One token (its jti may begin with '-').
        #[arg(long, allow_hyphen_values = true)]
        jti: Option<String>,
        /// The event type, e.g. limited_access_token_issued, limited_access_token_used, key_regenerated.
        #[arg(long = "type")]
        kind: Option<String>,
        /// success or failure.
        #[arg(long)]
        outcome: Option<String>,
        /// A Face operation, e.g. identify.
        #[arg(long)]
        operation: Option<String>,
        /// A feature flag, e.g. Face.Identification.
        #[arg(long)]
        feature: Option<String>,
        /// From this time (RFC 3339 or Unix seconds), inclusive.
        #[arg(long, value_parser = parse_time)]
        from: Option<latch_core::UnixTime>,
        /// Until this time, exclusive.
        #[arg(long, value_parser = parse_time)]
        to: Option<latch_core::UnixTime>,
        /// The `next` cursor of the previous page.
        #[arg(long)]
        after: Option<i64>,
        /// Records per page (at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Write whole chains, with their signed checkpoints, to a file that `audit verify` checks.
    Export {
        /// One chain (default: all).
        #[arg(long)]
        chain: Option<String>,
        /// jsonl (verifiable) or csv (for spreadsheets).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check exports offline: hashes, links, order, and every checkpoint's signature and root.
    Verify {
        /// The export, preceded by every archive of the same log (JSON lines, oldest first).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The audit public key, as saved from `latch audit key` (a JWK); repeat it for every
        /// replica that signs checkpoints (each has its own key).
        #[arg(long, required = true)]
        key_file: Vec<PathBuf>,
        /// A checkpoint saved earlier (`latch audit checkpoint`): the export must extend it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Move records older than an age out of the store into an archive that verifies (with the
    /// archives before it); the newest record of each chain always stays. Local store only.
    Archive {
        /// Archive records older than this many days (default: `audit.archive_after_days`).
        #[arg(long)]
        older_than_days: Option<u32>,
        /// One chain (default: all).
        #[arg(long)]
        chain: Option<String>,
        /// The archive file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild the audit index (what queries search) from the records themselves: the
    /// journal of the embedded store, or PostgreSQL's `audit_log`.
    Reindex,
    /// Check that the log now extends a checkpoint you saved, by an RFC 9162 consistency proof;
    /// or, with `--record`, that a record as the log shows it now is one your checkpoint
    /// covers, by an inclusion proof (no export needed).
    Prove {
        /// The checkpoint you saved (`latch audit checkpoint`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The audit public key you saved (`latch audit key`).
        #[arg(long)]
        key_file: PathBuf,
        /// The sequence number of a record to prove included in your checkpoint.
        #[arg(long)]
        record: Option<u64>,
    },
    /// The audit public key (a JWK): save it, and verify exports with it.
    Key,
    /// Write a new audit signing key (PKCS#8, owner-only) for replicas that share one, e.g.
    /// from a Kubernetes Secret mounted as `<data_dir>/audit-key.p8`.
    NewKey {
        /// The file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// A fresh signed checkpoint: save it, and later check that exports extend it.
    Checkpoint {
        /// The chain (default main).
        #[arg(long)]
        chain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RevokeCommand {
    /// One token, by its jti.
    Token {
        /// The token's jti (in its claims and in the audit log). A jti is base64url, so it
        /// may begin with '-'.
        #[arg(allow_hyphen_values = true)]
        jti: String,
    },
    /// Every token for a client resource issued before a time (an ISV: only its own tokens).
    Target {
        /// The client resource id.
        id: String,
        /// Tokens issued before this time: RFC 3339 or Unix seconds; default now.
        #[arg(long, value_parser = parse_time)]
        before: Option<latch_core::UnixTime>,
    },
    /// Every token an ISV issued before a time.
    Isv {
        /// The ISV's resource id.
        id: String,
        /// Tokens issued before this time: RFC 3339 or Unix seconds; default now.
        #[arg(long, value_parser = parse_time)]
        before: Option<latch_core::UnixTime>,
    },
}

fn parse_time(s: &str) -> Result<latch_core::UnixTime, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(latch_core::UnixTime(secs));
    }
    // A fraction of a second rounds up, so "before 05:00:00.5" covers all of 05:00:00.
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| latch_core::UnixTime(t.unix_timestamp() + i64::from(t.nanosecond() > 0)))
        .map_err(|_| format!("'{s}' is not RFC 3339 (2026-11-22T05:00:00Z) or Unix seconds"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum SigningKeyCommand {
    /// A new key signs from now on; the old one stays in the JWKS until its tokens expire.
    Rotate,
    /// The signing keys, with when each was created, retired, and stays published until.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialCommand {
    /// Set a new random token for a role; the old one stops working at once.
    Reset {
        /// `operator` or `auditor`.
        #[arg(long, value_parser = ["operator", "auditor"])]
        role: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address the STS listens on (overrides `sts.listen`).
    #[arg(long, env = "LATCH_STS_LISTEN")]
    pub(crate) sts_listen: Option<String>,
    /// Address the admin API listens on (overrides `admin.listen`).
    #[arg(long, env = "LATCH_ADMIN_LISTEN")]
    pub(crate) admin_listen: Option<String>,
    /// Address the Face front listens on (overrides `face.listen`).
    #[arg(long, env = "LATCH_FACE_LISTEN")]
    pub(crate) face_listen: Option<String>,
    /// Address `GET /metrics` (Prometheus, plain HTTP) is served on (overrides
    /// `metrics.listen`); without it, no metrics listener.
    #[arg(long)]
    pub(crate) metrics_listen: Option<String>,
    /// Which services to run.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub(crate) role: Role,
    /// Do not create the demo ISV and client in a new data directory.
    #[arg(long)]
    pub(crate) no_demo: bool,
    /// `off` serves plain HTTP (only behind a proxy that terminates TLS); overrides `tls.mode`.
    #[arg(long, value_parser = ["on", "off"])]
    pub(crate) tls: Option<String>,
    /// The PEM certificate chain, server certificate first (overrides `tls.cert`).
    #[arg(long)]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key: PKCS#8, SEC1 or PKCS#1 (overrides `tls.key`).
    #[arg(long)]
    pub(crate) tls_key: Option<PathBuf>,
    /// The host name clients use; the certificate must cover it (overrides `tls.cname`).
    #[arg(long)]
    pub(crate) tls_cname: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ResourceCommand {
    /// Create a resource; prints its two keys, once.
    Create {
        /// The resource id (/subscriptions/.../accounts/NAME).
        id: String,
    },
    /// List resources.
    List,
    /// Show one resource.
    Show {
        /// The resource id.
        id: String,
    },
    /// Set how the resource's Face endpoint authenticates callers: `key`
    /// (Ocp-Apim-Subscription-Key) or `token` (Authorization: Bearer from issueToken); the two
    /// are exclusive.
    AuthMode {
        /// The resource id.
        id: String,
        /// `key` or `token`.
        #[arg(long, value_parser = ["key", "token"])]
        mode: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List the key slots and when each key was made (never the keys).
    List {
        /// The resource id.
        id: String,
    },
    /// Replace one key; its old value stops working at once, the other key keeps working.
    Regenerate {
        /// The resource id.
        id: String,
        /// Which key: key1 or key2 (primary or secondary), as `az ... keys regenerate --key-name`.
        #[arg(long = "key-name", value_parser = parse_slot)]
        slot: latch_core::audit::KeySlot,
    },
}

fn parse_slot(s: &str) -> Result<latch_core::audit::KeySlot, String> {
    latch_core::audit::KeySlot::parse(s).ok_or_else(|| format!("'{s}' is not key1 or key2"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum IsvCommand {
    /// Allow a resource to issue limited access tokens for the given features.
    Enable {
        /// The ISV's resource id.
        id: String,
        /// A feature it may grant (repeat, or separate with commas).
        #[arg(long = "grant", required = true, value_delimiter = ',')]
        grants: Vec<String>,
    },
    /// Stop a resource from issuing limited access tokens.
    Disable {
        /// The ISV's resource id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalCommand {
    /// Set the features approved for a resource (no --feature clears them).
    Set {
        /// The resource id.
        id: String,
        /// An approved feature (repeat, or separate with commas).
        #[arg(long = "feature", value_delimiter = ',')]
        features: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Stop an ISV's issuance for a client.
    Block {
        /// The ISV's resource id (an ISV calling with --key may leave it out: itself).
        #[arg(long)]
        isv: Option<String>,
        /// The client's resource id.
        client: String,
    },
    /// Resume an ISV's issuance for a client.
    Unblock {
        /// The ISV's resource id (an ISV calling with --key may leave it out: itself).
        #[arg(long)]
        isv: Option<String>,
        /// The client's resource id.
        client: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn audit_verify_takes_a_key_file_not_the_global_key() {
        let cli = Cli::try_parse_from([
            "latch",
            "audit",
            "verify",
            "log.jsonl",
            "--key-file",
            "k.json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Audit(AuditCommand::Verify { .. })
        ));
        assert!(cli.global.key.is_none());
    }

    #[test]
    fn a_jti_that_begins_with_a_hyphen_is_a_jti() {
        let cli = Cli::try_parse_from(["latch", "revoke", "token", "-Zx3_q"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Revoke(RevokeCommand::Token { ref jti }) if jti == "-Zx3_q"
        ));
        let cli = Cli::try_parse_from(["latch", "audit", "query", "--jti", "-Zx3_q"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Audit(AuditCommand::Query { ref jti, .. }) if jti.as_deref() == Some("-Zx3_q")
        ));
    }

    #[test]
    fn credentials_never_print() {
        let cli = Cli::try_parse_from([
            "latch",
            "--server",
            "http://x",
            "--token",
            "TOKEN-VALUE",
            "resource",
            "list",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("TOKEN-VALUE"));
    }
}
