//! The services of one process, on listeners bound beforehand: [`run`] (or [`start`], then
//! [`Started::serve`]) is what `latch serve` does after it has caught the signals and bound
//! its sockets, and what a test does to run the services in its own process.
//!
//! The services share the store, the signing keys and one audit writer (one chain, group
//! commit). When `shutdown` completes, every service stops accepting, finishes the requests in
//! flight, and the audit writer commits every queued record before `serve` returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use latch_admin::Context;
use latch_audit::writer::AuditLog;
use latch_core::audit::Actor;
use latch_core::Verifier;
use latch_face::backend::{Backend, Upstream};
use latch_face::Verifiers;
use latch_store::operations::Admin;
use latch_store::signing::{KeyRing, SharedKeyRing};
use tokio::net::TcpListener;

use crate::cli::Role;
use crate::config::Config;
use crate::output::{self, CliError};
use crate::tls::Tls;

mod bootstrap;
mod configuration;
mod maintenance;
mod services;

/// A listener for each service this process runs, bound beforehand: a service without one does
/// not run.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The STS.
    pub sts: Option<TcpListener>,
    /// The Face front.
    pub face: Option<TcpListener>,
    /// The admin API.
    pub admin: Option<TcpListener>,
    /// `GET /metrics` (plain HTTP).
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the configured address of each service `role` runs (and of the metrics, when
    /// configured).
    pub async fn bind(config: &Config, role: Role) -> Result<Listeners, CliError> {
        let (sts, face, admin) = role.services();
        let bind = |on: bool, addr: SocketAddr| async move {
            if !on {
                return Ok(None);
            }
            TcpListener::bind(addr)
                .await
                .map(Some)
                .map_err(|e| startup_failed(format!("cannot listen on {addr}: {e}")))
        };
        Ok(Listeners {
            sts: bind(sts, config.sts.listen).await?,
            admin: bind(admin, config.admin_listen).await?,
            face: bind(face, config.face.listen).await?,
            metrics: match config.metrics_listen {
                Some(addr) => bind(true, addr).await?,
                None => None,
            },
        })
    }
}

impl Role {
    /// Whether it runs the STS, the Face front, the admin API.
    pub(crate) fn services(self) -> (bool, bool, bool) {
        match self {
            Role::All => (true, true, true),
            Role::Sts => (true, false, false),
            Role::Face => (false, true, false),
            Role::Admin => (false, false, true),
        }
    }
}

/// What the services share: the store, randomness, time and the audit key (the admin API's
/// context), the signing keys and the verifiers of their tokens.
#[derive(Clone)]
struct Shared {
    context: Context,
    ring: SharedKeyRing,
    verifiers: Verifiers,
}

impl Shared {
    /// Opens the store (migrating it) and loads the keys: the audit key beside the store, and
    /// the signing keys (a new store gets one).
    async fn open(config: &Config) -> Result<Shared, CliError> {
        let context = crate::store::open_context(config).await?;
        let ring = SharedKeyRing::new(
            KeyRing::load_or_create(
                context.store.as_ref(),
                context.rng.as_ref(),
                context.clock.as_ref(),
            )
            .await?,
        );
        let verifiers = Verifiers::new(Verifier::new(
            config.sts.issuer.clone(),
            ring.current().public_keys().to_vec(),
            config.face.leeway_secs,
        ));
        Ok(Shared {
            context,
            ring,
            verifiers,
        })
    }

    fn admin(&self) -> Admin {
        Admin::new(
            self.context.store.clone(),
            self.context.rng.clone(),
            self.context.clock.clone(),
            Actor::System,
        )
    }
}

/// The services, started: serving until [`Started::serve`]'s shutdown.
pub struct Started {
    servers: services::Servers,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs the services on `listeners` until `shutdown` completes.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    start(config, listeners).await?.serve(shutdown).await;
    Ok(())
}

/// Checks and prepares everything, then starts the services on `listeners`: when it returns,
/// they answer, and a new store has its credentials (and, unless `--no-demo`, the demo ISV and
/// client) in the data directory.
pub async fn start(config: Config, listeners: Listeners) -> Result<Started, CliError> {
    let shared = Shared::open(&config).await?;
    // A new store has no operator credential yet: bootstrap it.
    let fresh = shared
        .context
        .store
        .admin_credential(latch_store::AdminRole::Operator)
        .await?
        .is_none();
    let engine = match &config.face.engine {
        Some(settings) if listeners.face.is_some() => Some(
            bootstrap::start_engine(
                settings,
                &config.face.models_dir,
                shared.context.store.clone(),
                shared.context.clock.clone(),
                !config.tls.is_on(),
            )
            .await?,
        ),
        _ => None,
    };
    let backend = backend(&config, engine.clone())?;
    // HTTPS unless turned off explicitly; a certificate that fails a check stops us here.
    let (tls, watch) = match Tls::prepare(&config, shared.context.clock.now())? {
        Some((tls, watch)) => (Some(Arc::new(tls)), Some(watch)),
        None => (None, None),
    };
    let urls = Urls::of(&listeners, &config, tls.as_deref())?;
    // Only a process that serves the admin API hands out its credentials: replicas of the STS
    // or the Face front starting together on a new database leave them to it.
    if fresh && listeners.admin.is_some() {
        bootstrap_new_store(&config, &shared, &urls, engine.as_deref()).await?;
    }
    let (audit, writer) = AuditLog::spawn(shared.context.store.clone(), config.audit.chain.clone());
    let role = Role::of(&listeners);
    configuration::record(&audit, &config, role, shared.context.clock.as_ref()).await?;
    match &tls {
        Some(tls) => crate::tls::record_startup(tls, &audit, shared.context.clock.as_ref()).await?,
        None => {
            let message = "latch: WARNING: TLS is off (tls.mode = off): serving plain HTTP. Only do this behind a proxy that terminates TLS.";
            tracing::warn!(target: "latch::tls", "{message}");
            output::line(message);
        }
    }
    let mut servers = services::Servers::new(&config, &shared, &audit, tls.clone());
    let mut writers = vec![writer];
    servers
        .spawn_all(listeners, &urls, backend, &mut writers)
        .await?;
    servers.spawn_renewal(tls.zip(watch));
    servers.spawn_maintenance();
    drop(audit);
    tracing::info!(target: "latch::serve", kid = shared.ring.current().active().kid(), data_dir = %config.data_dir.display(), "ready");
    output::line("latch: ready");
    Ok(Started { servers, writers })
}

impl Started {
    /// Serves until `shutdown` completes; then stops accepting, finishes the requests in flight,
    /// and waits until the audit writers have committed every queued record.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        tracing::info!(target: "latch::serve", "shutting down");
        self.servers.stop().await;
        // The routers, and with them every audit handle, are gone: the writers drain and stop.
        for w in self.writers {
            let _ = w.await;
        }
        tracing::info!(target: "latch::serve", "stopped; every audit record is committed");
    }
}

impl Role {
    /// The role a set of listeners amounts to (as recorded in the configuration record).
    fn of(listeners: &Listeners) -> Role {
        match (
            listeners.sts.is_some(),
            listeners.face.is_some(),
            listeners.admin.is_some(),
        ) {
            (true, false, false) => Role::Sts,
            (false, true, false) => Role::Face,
            (false, false, true) => Role::Admin,
            _ => Role::All,
        }
    }
}

/// The Face front's backend: the upstream when one is configured, else the engine if it runs.
fn backend(
    config: &Config,
    engine: Option<Arc<latch_engine::Engine>>,
) -> Result<Backend, CliError> {
    Ok(match (&config.face.upstream, engine) {
        (Some(upstream), _) => {
            Backend::Configured(Arc::new(Upstream::new(upstream).map_err(|e| {
                CliError::new("ConfigurationError", e.to_string(), crate::exit::CONFIG)
            })?))
        }
        (None, Some(engine)) => Backend::Configured(engine),
        (None, None) => Backend::Unconfigured,
    })
}

/// A new store's credentials, and the demo resources when asked for.
async fn bootstrap_new_store(
    config: &Config,
    shared: &Shared,
    urls: &Urls,
    engine: Option<&latch_engine::Engine>,
) -> Result<(), CliError> {
    // Clients of a development certificate must be told to trust it.
    let cacert = crate::tls::Files::of(config)
        .filter(|f| f.development)
        .map(|f| f.cert);
    let admin = shared.admin();
    bootstrap::credentials(&admin, &config.data_dir, &urls.admin, cacert.as_deref()).await?;
    if config.demo {
        bootstrap::demo(
            &admin,
            &config.data_dir,
            &urls.sts_public,
            cacert.as_deref(),
        )
        .await?;
        if let Some(engine) = engine {
            bootstrap::enroll_demo(
                engine,
                &config.face.models_dir,
                &config.data_dir,
                &urls.face,
            )
            .await?;
        }
    }
    Ok(())
}

/// The URLs clients are given: with TLS, the name the certificate covers.
struct Urls {
    sts_public: String,
    face: String,
    admin: String,
}

impl Urls {
    fn of(listeners: &Listeners, config: &Config, tls: Option<&Tls>) -> Result<Urls, CliError> {
        let url_of = |listener: &Option<TcpListener>, configured: SocketAddr| {
            let addr = listener
                .as_ref()
                .map_or(Ok(configured), TcpListener::local_addr)
                .map_err(|e| startup_failed(format!("listener: {e}")))?;
            Ok::<_, CliError>(match tls {
                Some(tls) => format!("https://{}:{}", tls.cname, addr.port()),
                None => format!("http://{addr}"),
            })
        };
        let sts = url_of(&listeners.sts, config.sts.listen)?;
        Ok(Urls {
            sts_public: config.sts.public_url.clone().unwrap_or(sts),
            face: url_of(&listeners.face, config.face.listen)?,
            admin: url_of(&listeners.admin, config.admin_listen)?,
        })
    }
}

fn startup_failed(message: String) -> CliError {
    CliError::new("StartupFailed", message, crate::exit::FAILURE)
}
