//! Which store a command uses: PostgreSQL when `store.url` (or `LATCH_DATABASE_URL`) is set,
//! otherwise the embedded one in the data directory.

use std::sync::Arc;

use latch_admin::Context;
use latch_audit::signer::AuditSigner;
use latch_core::{Clock, SystemClock};
use latch_store::postgres::PgStore;
use latch_store::sqlite::SqliteStore;
use latch_store::Store;
use ring::rand::SystemRandom;

use crate::cli::StoreCommand;
use crate::config::Config;
use crate::exit;
use crate::output::{self, CliError};

/// Opens the configured store, applying pending migrations. The data directory is made
/// (owner-only) either way: the audit key and the development certificate live there.
pub(crate) async fn open(config: &Config, rng: &SystemRandom) -> Result<Arc<dyn Store>, CliError> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(&config.data_dir).map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot create {}: {e}", config.data_dir.display()),
            exit::FAILURE,
        )
    })?;
    Ok(match &config.store.database_url {
        Some(url) => Arc::new(
            PgStore::connect_with_ca(
                url.expose(),
                config.store.database_ca.as_deref(),
                &config.audit.chain,
                rng,
            )
            .await
            .map_err(unreachable)?,
        ),
        None => Arc::new(SqliteStore::open_with(
            &config.data_dir,
            &config.audit.chain,
            rng,
            config.audit.journal,
        )?),
    })
}

/// The configured store with what every user of it needs beside it: randomness, the clock, and
/// the audit key and signed heads, which live in the data directory, never in the store.
pub(crate) async fn open_context(config: &Config) -> Result<Context, CliError> {
    let rng = Arc::new(SystemRandom::new());
    let store = open(config, &rng).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = Arc::new(
        AuditSigner::open(
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

/// Where the store is, for logs and the configuration record (never a password).
pub(crate) fn describe(config: &Config) -> String {
    match &config.store.database_url {
        Some(url) => match PgStore::connect_only(url.expose(), &config.audit.chain) {
            Ok(store) => format!("postgres {}", store.location()),
            Err(_) => "postgres".into(),
        },
        None => format!("embedded {}", config.data_dir.display()),
    }
}

fn unreachable(e: latch_store::StoreError) -> CliError {
    CliError::new(
        "StoreUnavailable",
        format!("the database: {e}"),
        exit::FAILURE,
    )
}

/// `latch store ...`.
pub(crate) async fn run(config: &Config, command: StoreCommand) -> Result<(), CliError> {
    let Some(url) = &config.store.database_url else {
        return Err(CliError::usage(
            "no shared store configured (store.url or LATCH_DATABASE_URL); the embedded store migrates itself when opened",
        ));
    };
    let store = PgStore::handle(
        url.expose(),
        config.store.database_ca.as_deref(),
        &config.audit.chain,
    )
    .map_err(unreachable)?;
    match command {
        StoreCommand::Migrate => {
            let applied = store.migrate().await.map_err(unreachable)?;
            output::line(&format!(
                "latch: {applied} migration(s) applied to {}; the schema is current",
                store.location()
            ));
        }
        StoreCommand::Status => {
            let pending = store.pending_migrations().await.map_err(unreachable)?;
            output::line(&format!(
                "latch: {}: {pending} migration(s) pending",
                store.location()
            ));
            if pending > 0 {
                return Err(CliError::new(
                    "MigrationsPending",
                    "run `latch store migrate`",
                    exit::FAILURE,
                ));
            }
        }
    }
    Ok(())
}
