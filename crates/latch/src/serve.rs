//! `latch serve`: open the store, bootstrap a new one, and run the STS and the Face front (or
//! one of them, `--role`) on their listeners until stopped.
//!
//! A new data directory gets a signing key and, unless `--no-demo`, a demo ISV (granted
//! Face.Identification and Face.Verification) and a demo client. Their keys go to
//! `demo.env` in the data directory (mode 0600), for scripts and the README's curl lines; they
//! are printed only when standard output is a terminal, so they never reach a log collector.
//!
//! Both services share the store, the signing keys and one audit writer (one chain, group
//! commit). On SIGINT or SIGTERM both stop accepting, finish the requests in flight, and wait
//! for the audit writer to commit every queued record before the process exits.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use latch_audit::checkpoints::write_private;
use latch_audit::writer::AuditLog;
use latch_core::audit::Actor;
use latch_core::Verifier;
use latch_core::{Clock, FeatureSet, ResourceId, SystemClock};
use latch_face::backend::{Backend, Upstream};
use latch_face::FaceState;
use latch_face::Verifiers;
use latch_store::check_cache::CheckCache;
use latch_store::operations::{Admin, NewKeys};
use latch_store::signing::{KeyRing, SharedKeyRing};
use latch_store::Store;
use latch_sts::{AppState, StsConfig};
use ring::rand::SystemRandom;

use crate::cli::{Role, ServeArgs};
use crate::config::Config;
use crate::output::{self, CliError};

/// The demo ISV's resource id.
pub(crate) const DEMO_ISV: &str = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/demo-isv-rg/providers/Microsoft.CognitiveServices/accounts/demo-isv-face";
/// The demo client's resource id.
pub(crate) const DEMO_CLIENT: &str = "/subscriptions/00000000-0000-4000-8000-000000000002/resourceGroups/demo-client-rg/providers/Microsoft.CognitiveServices/accounts/demo-client-face";
/// The file the admin API credentials are written to, in the data directory.
pub(crate) const ADMIN_FILE: &str = "admin.env";
/// The demo client's large person group.
pub(crate) const DEMO_GROUP: &str = "demo-staff";
/// The file the demo credentials are written to, in the data directory.
pub(crate) const DEMO_FILE: &str = "demo.env";

pub(crate) async fn run(config: Config, args: ServeArgs) -> Result<(), CliError> {
    // First of all: from here on SIGHUP reloads the certificate, and SIGTERM or SIGINT stop
    // the server gracefully, rather than ending the process at once.
    let hangup = crate::tls::hangup_signal();
    let shutdown = Shutdown::install();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        CliError::new(
            "StartupFailed",
            format!("{what}: {e}"),
            crate::exit::FAILURE,
        )
    };
    let rng = Arc::new(SystemRandom::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = crate::store::open(&config, &rng).await?;
    // A new store has no operator credential yet: bootstrap it.
    let fresh = store
        .admin_credential(latch_store::AdminRole::Operator)
        .await?
        .is_none();
    // The audit key and signed heads live beside the store, never in it.
    let audit_signer = Arc::new(
        latch_audit::checkpoints::AuditSigner::open(
            &config.data_dir,
            store.as_ref(),
            rng.as_ref(),
            clock.as_ref(),
        )
        .await?,
    );
    let ring = SharedKeyRing::new(
        KeyRing::load_or_create(store.as_ref(), rng.as_ref(), clock.as_ref()).await?,
    );
    let verifiers = Verifiers::new(Verifier::new(
        config.sts.issuer.clone(),
        ring.current().public_keys().to_vec(),
        config.face.leeway_secs,
    ));
    let (run_sts, run_face, run_admin) = match args.role {
        Role::All => (true, true, true),
        Role::Sts => (true, false, false),
        Role::Face => (false, true, false),
        Role::Admin => (false, false, true),
    };
    // Everything is checked and bound before anything is served.
    let engine = match &config.face.engine {
        Some(settings) if run_face => {
            let plain = !config.tls.is_on();
            Some(
                start_engine(
                    settings,
                    &config.face.models_dir,
                    store.clone(),
                    clock.clone(),
                    plain,
                )
                .await?,
            )
        }
        _ => None,
    };
    let backend = match (&config.face.upstream, &engine) {
        (Some(upstream), _) => {
            Backend::Upstream(Box::new(Upstream::new(upstream).map_err(|e| {
                CliError::new("ConfigurationError", e.to_string(), crate::exit::CONFIG)
            })?))
        }
        (None, Some(engine)) => Backend::Engine(engine.clone()),
        (None, None) => Backend::Unconfigured,
    };
    // Enough descriptors for every connection the configuration allows, or no start.
    let tls_on = config.tls.is_on();
    let limits = &config.server;
    let listening: Vec<_> = [
        (run_sts, limits.limits, tls_on),
        (run_face, limits.without_request_timeout(), tls_on),
        (run_admin, limits.limits, tls_on),
        (config.metrics_listen.is_some(), limits.limits, false),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, l, tls)| (l, tls))
    .collect();
    let needed = crate::open_files::needed(
        &listening,
        latch_tls::HandshakeLimits::default().max_in_progress,
    );
    let open_files =
        crate::open_files::ensure(needed).map_err(|e| fail("not enough file descriptors", &e))?;
    tracing::info!(target: "latch::serve", open_files, needed, "open-file limit");
    let bind = |addr: std::net::SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| fail(&format!("cannot listen on {addr}"), &e))
    };
    let sts_listener = if run_sts {
        Some(bind(config.sts.listen).await?)
    } else {
        None
    };
    let admin_listener = if run_admin {
        Some(bind(config.admin_listen).await?)
    } else {
        None
    };
    let face_listener = if run_face {
        Some(bind(config.face.listen).await?)
    } else {
        None
    };
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    // HTTPS unless turned off explicitly; a certificate that fails a check stops us here.
    let (tls, watch) = match crate::tls::Tls::prepare(&config, clock.now())? {
        Some((tls, watch)) => (Some(Arc::new(tls)), Some(watch)),
        None => (None, None),
    };
    // The URLs clients are given: with TLS, the name the certificate covers.
    let url_of = |listener: &Option<tokio::net::TcpListener>, configured: std::net::SocketAddr| {
        let addr = listener
            .as_ref()
            .map_or(Ok(configured), |l| l.local_addr())
            .map_err(|e| fail("listener", &e))?;
        Ok::<_, CliError>(match &tls {
            Some(tls) => format!("https://{}:{}", tls.cname, addr.port()),
            None => format!("http://{addr}"),
        })
    };
    let sts_url = url_of(&sts_listener, config.sts.listen)?;
    let sts_public_url = config.sts.public_url.clone().unwrap_or(sts_url);

    // Clients of a development certificate must be told to trust it.
    let cacert = crate::tls::Files::of(&config)
        .filter(|f| f.development)
        .map(|f| f.cert);
    // Only a process that serves the admin API hands out its credentials: replicas of the STS
    // or the Face front starting together on a new database leave them to it.
    if fresh && run_admin {
        let admin = Admin::new(store.clone(), rng.clone(), clock.clone(), Actor::System);
        let admin_url = url_of(&admin_listener, config.admin_listen)?;
        bootstrap_credentials(&admin, &config.data_dir, &admin_url, cacert.as_deref()).await?;
    }
    if fresh && run_admin && !args.no_demo {
        let admin = Admin::new(store.clone(), rng.clone(), clock.clone(), Actor::System);
        bootstrap_demo(&admin, &config.data_dir, &sts_public_url, cacert.as_deref()).await?;
        if let Some(engine) = &engine {
            let face_url = url_of(&face_listener, config.face.listen)?;
            enroll_demo(engine, &config.face.models_dir, &config.data_dir, &face_url).await?;
        }
    }

    let (audit, writer) = AuditLog::spawn(store.clone(), config.audit.chain.clone());
    record_configuration(&audit, &config, args.role, clock.as_ref()).await?;
    if let Some(tls) = &tls {
        crate::tls::record_startup(tls, &audit, clock.as_ref()).await?;
    } else {
        let message = "latch: WARNING: TLS is off (tls.mode = off): serving plain HTTP. Only do this behind a proxy that terminates TLS.";
        tracing::warn!(target: "latch::tls", "{message}");
        output::line(message);
    }
    let metrics = Arc::new(latch_http::metrics::Metrics::default());
    let mut writers = Vec::new();
    metrics.watch_audit(&audit);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    if let Some(listener) = sts_listener {
        let sts_config = StsConfig {
            issuer: config.sts.issuer.clone(),
            region: config.sts.region.clone(),
            public_url: sts_public_url.clone(),
            limits: config.sts.limits.clone(),
        };
        let state = AppState::new(
            CheckCache::new(store.clone(), config.store.recheck),
            audit.clone(),
            ring.clone(),
            clock.clone(),
            sts_config,
        )
        .await?;
        announce("STS", &listener, tls.as_deref())?;
        // Refusals without a valid key are written as summaries: every interval, and once
        // more when the STS has answered its last request.
        let summaries = state.refusal_summaries();
        servers.spawn({
            let summaries = summaries.clone();
            let stopped = stopped.clone();
            async move {
                summaries.run(stopped).await;
                Ok(())
            }
        });
        let serving = serve_until(
            listener,
            tls.as_deref(),
            latch_http::metrics::measure(latch_sts::router(state), &metrics, "sts")
                .merge(latch_http::health::router(store.clone())),
            config.server.limits,
            metrics.connections("sts"),
            stopped.clone(),
        );
        servers.spawn(async move {
            let served = serving.await;
            summaries.flush().await;
            served
        });
    }
    if let Some(listener) = face_listener {
        // Closed (the default): the Face front shares the store and the audit writer. Cached:
        // its checks read through a memory of recent answers, and its usage records go to a
        // writer of their own that spools them while the store fails.
        let (face_store, face_audit): (Arc<dyn Store>, _) = match config.face.outage_secs {
            None => (store.clone(), audit.clone()),
            Some(bound) => {
                let cached =
                    latch_store::stale::StaleIfError::new(store.clone(), clock.clone(), bound);
                metrics.watch_cache(cached.stats());
                let spool = config
                    .data_dir
                    .join(format!("audit-spool-{}.jsonl", config.audit.chain));
                let (log, face_writer) = AuditLog::spawn_spooled(
                    store.clone(),
                    config.audit.chain.clone(),
                    latch_audit::writer::Spool::at(spool),
                );
                writers.push(face_writer);
                tracing::warn!(target: "latch::serve", bound_secs = bound, "face.store_outage = cached: while the store fails, the Face front accepts what it read up to {bound} s before");
                (Arc::new(cached) as Arc<dyn Store>, log)
            }
        };
        // With an outage memory under the cache: answers in use are read again within half the
        // outage bound, so the memory holds them, at most half the bound old, when an outage
        // starts; and each token's revocation is asked for, since the memory can answer only
        // what it was asked.
        let checks = match config.face.outage_secs {
            None => CheckCache::new(face_store, config.store.recheck),
            Some(bound) => CheckCache::with_limits(
                face_store,
                config.store.recheck,
                std::time::Duration::from_millis(bound.unsigned_abs() * 500),
                0,
            ),
        };
        let state = FaceState::new(
            checks,
            face_audit,
            verifiers.clone(),
            clock.clone(),
            config.face.checks.clone(),
            backend,
        )
        .await?;
        if let Some(upstream) = &config.face.upstream {
            if crate::tls::plain_http_to_another_host(&upstream.url) {
                let message = format!(
                    "latch: WARNING: face.upstream_url {} is plain HTTP to another host: the upstream's key crosses the network in the clear",
                    upstream.url
                );
                tracing::warn!(target: "latch::tls", "{message}");
                output::line(&message);
            }
        }
        if config.face.upstream.is_none() && engine.is_none() {
            tracing::warn!(target: "latch::serve", "no Face backend configured (face.upstream_url): allowed calls are answered 501");
        }
        announce("Face front", &listener, tls.as_deref())?;
        servers.spawn(serve_until(
            listener,
            tls.as_deref(),
            latch_http::metrics::measure(latch_face::router(state), &metrics, "face")
                .merge(latch_http::health::router(store.clone())),
            config.server.without_request_timeout(),
            metrics.connections("face"),
            stopped.clone(),
        ));
    }
    if let Some(listener) = admin_listener {
        let ctx = latch_admin::Context {
            store: store.clone(),
            rng: rng.clone(),
            clock: clock.clone(),
            audit: audit_signer.clone(),
        };
        let router =
            latch_http::metrics::measure(latch_admin::http::router(ctx).await?, &metrics, "admin")
                .merge(latch_http::health::router(store.clone()));
        announce("admin API", &listener, tls.as_deref())?;
        servers.spawn(serve_until(
            listener,
            tls.as_deref(),
            router,
            config.server.limits,
            metrics.connections("admin"),
            stopped.clone(),
        ));
    }
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().map_err(|e| fail("listener", &e))?;
        tracing::info!(target: "latch::serve", %addr, "metrics listening");
        output::line(&format!(
            "latch: metrics listening on http://{addr}/metrics"
        ));
        servers.spawn(serve_until(
            listener,
            None,
            latch_http::metrics::router(metrics.clone()),
            config.server.limits,
            metrics.connections("metrics"),
            stopped.clone(),
        ));
    }
    servers.spawn(crate::tls::renew(
        tls.clone().zip(watch),
        hangup,
        audit.clone(),
        clock.clone(),
        stopped.clone(),
    ));
    drop(audit);
    servers.spawn(maintain(
        Maintenance {
            audit: audit_signer.clone(),
            chain: config.audit.chain.clone(),
            checkpoints: latch_audit::checkpoints::CheckpointPolicy::new(
                config.audit.checkpoint_every_records,
                config.audit.checkpoint_every_secs,
            ),
            store: store.clone(),
            rng: rng.clone(),
            clock: clock.clone(),
            ring: ring.clone(),
            verifiers,
            issuer: config.sts.issuer.clone(),
            leeway_secs: config.face.leeway_secs,
        },
        stopped.clone(),
    ));
    tracing::info!(target: "latch::serve", kid = ring.current().active().kid(), data_dir = %config.data_dir.display(), "ready");
    output::line("latch: ready");

    shutdown.requested().await;
    let _ = stop.send(true);
    while let Some(result) = servers.join_next().await {
        if let Ok(Err(e)) = result {
            tracing::error!(target: "latch::serve", error = %e, "server failed");
        }
    }
    // The routers, and with them every audit handle, are gone: the writer drains and stops.
    let _ = writer.await;
    for w in writers {
        let _ = w.await;
    }
    tracing::info!(target: "latch::serve", "stopped; every audit record is committed");
    Ok(())
}

/// Records the settings this process runs with (no secret: the upstream key is reported only
/// as present or not).
async fn record_configuration(
    audit: &AuditLog,
    config: &Config,
    role: Role,
    clock: &dyn Clock,
) -> Result<(), CliError> {
    let settings = serde_json::json!({
        "role": format!("{role:?}").to_lowercase(),
        "dataDir": config.data_dir.display().to_string(),
        "store": crate::store::describe(config),
        "auditChain": config.audit.chain,
        "checkpointEveryRecords": config.audit.checkpoint_every_records,
        "checkpointEverySecs": config.audit.checkpoint_every_secs,
        "stsListen": config.sts.listen.to_string(),
        "faceListen": config.face.listen.to_string(),
        "adminListen": config.admin_listen.to_string(),
        "issuer": config.sts.issuer,
        "region": config.sts.region,
        "leewaySecs": config.face.leeway_secs,
        "faceUpstream": config.face.upstream.as_ref().map(|u| u.url.clone()),
        "faceUpstreamKey": config.face.upstream.as_ref().is_some_and(|u| u.key.is_some()),
        "rateLimit": [config.face.checks.rate_limit.per_second, config.face.checks.rate_limit.burst],
        "server": {
            "headerReadTimeoutSecs": config.server.limits.header_read_timeout.as_secs(),
            "idleTimeoutSecs": config.server.limits.idle_timeout.as_secs(),
            "bodyReadTimeoutSecs": config.server.limits.body_read_timeout.as_secs(),
            "requestTimeoutSecs": config.server.limits.request_timeout.map(|t| t.as_secs()),
            "maxConnections": config.server.limits.max_connections,
            "maxConnectionsPerAddress": config.server.limits.max_per_address,
            "clientAddressHeader": config.server.client_addresses.header().map(|h| h.as_str()),
            "trustedProxies": config.server.client_addresses.proxies().iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "stsRateLimit": [config.sts.limits.per_key.per_second, config.sts.limits.per_key.burst],
        "stsAddressRateLimit": [config.sts.limits.per_address.per_second, config.sts.limits.per_address.burst],
        "refusalSummarySecs": config.sts.limits.refusal_summary.as_secs(),
        "maxBodyBytes": config.face.checks.max_body,
        "features": format!("{:?}", config.face.checks.policy),
        "tls": match &config.tls {
            crate::config::TlsSetting::Off => serde_json::json!({ "mode": "off" }),
            crate::config::TlsSetting::Files { cert, key, cname } => serde_json::json!({
                "mode": "files",
                "cert": cert.display().to_string(),
                "key": key.display().to_string(),
                "cname": cname.to_string(),
            }),
            crate::config::TlsSetting::Development { cname } => {
                serde_json::json!({ "mode": "development", "cname": cname.to_string() })
            }
        },
    });
    let digest = latch_core::jws::b64url(ring::digest::digest(
        &ring::digest::SHA256,
        settings.to_string().as_bytes(),
    ));
    let draft = latch_core::audit::AuditDraft {
        time: clock.now(),
        request_id: None,
        actor: Actor::System,
        event: latch_core::audit::AuditEvent::ServiceConfigured {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            settings,
            digest,
        },
    };
    audit.record(draft).await.map(|_| ()).map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot write the audit log: {e}"),
            crate::exit::FAILURE,
        )
    })
}

/// What the maintenance task keeps up to date.
struct Maintenance {
    audit: Arc<latch_audit::checkpoints::AuditSigner>,
    chain: String,
    checkpoints: latch_audit::checkpoints::CheckpointPolicy,
    store: Arc<dyn Store>,
    rng: Arc<SystemRandom>,
    clock: Arc<dyn Clock>,
    ring: SharedKeyRing,
    verifiers: Verifiers,
    issuer: String,
    leeway_secs: i64,
}

/// Every second: reload the signing keys from the store, so a rotation made anywhere (the
/// admin API, the command line, another replica) is in force here within a second, and a
/// retired key leaves the JWKS and the verifiers once its tokens have expired; and sign a
/// checkpoint of this process's audit chain when one is due (every N records or T seconds,
/// also when idle). Every minute: drop revocations that no longer cover a valid token.
async fn maintain(
    mut m: Maintenance,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            _ = tick.tick() => {}
        }
        ticks += 1;
        match KeyRing::load(m.store.as_ref(), m.rng.as_ref(), m.clock.now()).await {
            Ok(ring) => {
                if ring.active().kid() != m.ring.current().active().kid()
                    || ring.public_keys() != m.ring.current().public_keys()
                {
                    tracing::info!(target: "latch::keys", kid = ring.active().kid(), published = ring.public_keys().len(), "signing keys changed");
                }
                // A new verifier only when the keys changed: it would start with an empty
                // memory of verified tokens.
                if m.verifiers.current().keys() != ring.public_keys() {
                    m.verifiers.replace(Verifier::new(
                        m.issuer.clone(),
                        ring.public_keys().to_vec(),
                        m.leeway_secs,
                    ));
                }
                m.ring.replace(ring);
            }
            Err(e) => {
                tracing::warn!(target: "latch::keys", error = %e, "cannot reload the signing keys; keeping the ones in force")
            }
        }
        match m
            .checkpoints
            .tick(
                m.store.as_ref(),
                &m.audit,
                &m.chain,
                m.rng.as_ref(),
                m.clock.as_ref(),
            )
            .await
        {
            Ok(Some(cp)) => {
                tracing::debug!(target: "latch::audit", size = cp.size, "checkpoint signed")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "latch::audit", error = %e, "cannot sign a checkpoint")
            }
        }
        if ticks % 60 == 0 {
            match m.store.prune_revocations(m.clock.now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "latch::revocations", dropped = n, "expired revocations dropped")
                }
                Err(e) => {
                    tracing::warn!(target: "latch::revocations", error = %e, "cannot prune revocations")
                }
            }
        }
    }
}

fn announce(
    what: &str,
    listener: &tokio::net::TcpListener,
    tls: Option<&crate::tls::Tls>,
) -> Result<(), CliError> {
    let addr = listener.local_addr().map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("listener: {e}"),
            crate::exit::FAILURE,
        )
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(target: "latch::serve", %addr, scheme, "{what} listening");
    output::line(&format!("latch: {what} listening on {scheme}://{addr}"));
    if tls.is_none() {
        crate::tls::warn_plain_http(what, addr);
    }
    Ok(())
}

/// Serves `router` on `listener` (over TLS when configured) within `limits` until `stopped`,
/// then finishes the requests in flight.
fn serve_until(
    listener: tokio::net::TcpListener,
    tls: Option<&crate::tls::Tls>,
    router: axum::Router,
    limits: latch_http::server::ConnectionLimits,
    stats: Arc<latch_http::server::ConnectionStats>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> {
    let stop = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    match tls {
        Some(tls) => {
            let listener = latch_tls::TlsListener::new(listener, tls.server_config.clone());
            Box::pin(latch_http::server::serve(
                listener, router, limits, stats, stop,
            ))
        }
        None => Box::pin(latch_http::server::serve(
            listener, router, limits, stats, stop,
        )),
    }
}

/// A new store gets an operator token and an auditor token for the admin API, written to
/// `admin.env` in the data directory (mode 0600); only their digests are stored.
async fn bootstrap_credentials(
    admin: &Admin,
    data_dir: &Path,
    admin_url: &str,
    cacert: Option<&Path>,
) -> Result<(), CliError> {
    let operator = admin
        .reset_admin_credential(latch_store::AdminRole::Operator)
        .await?;
    let auditor = admin
        .reset_admin_credential(latch_store::AdminRole::Auditor)
        .await?;
    let path = data_dir.join(ADMIN_FILE);
    let text = format!(
        "# latch admin API credentials: secret, readable by the owner only.\n\
         # Use them with:  set -a; . {dir}/{ADMIN_FILE}; set +a\n\
         ADMIN_URL={admin_url}\n\
         OPERATOR_TOKEN={operator}\n\
         AUDITOR_TOKEN={auditor}\n{cacert}",
        dir = data_dir.display(),
        cacert = cacert
            .map(|p| format!(
                "# The development certificate the servers present (latch --cacert).\nLATCH_CACERT={}\n",
                p.display()
            ))
            .unwrap_or_default(),
        operator = operator.expose_secret(),
        auditor = auditor.expose_secret(),
    );
    write_private(&path, text.as_bytes(), true).map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot write {}: {e}", path.display()),
            crate::exit::FAILURE,
        )
    })?;
    output::line(&format!(
        "latch: admin API credentials written to {}",
        path.display()
    ));
    Ok(())
}

async fn bootstrap_demo(
    admin: &Admin,
    data_dir: &Path,
    sts_url: &str,
    cacert: Option<&Path>,
) -> Result<(), CliError> {
    let isv = ResourceId::parse(DEMO_ISV).map_err(|e| CliError::usage(e.to_string()))?;
    let client = ResourceId::parse(DEMO_CLIENT).map_err(|e| CliError::usage(e.to_string()))?;
    let (_, isv_keys) = admin.create_resource(&isv).await?;
    let grants = FeatureSet::parse_csv("Face.Identification,Face.Verification")
        .map_err(|e| CliError::usage(e.to_string()))?;
    admin.set_isv(&isv, true, &grants).await?;
    let (_, client_keys) = admin.create_resource(&client).await?;
    let path = data_dir.join(DEMO_FILE);
    write_private(
        &path,
        demo_env(data_dir, sts_url, cacert, &isv_keys, &client_keys).as_bytes(),
        true,
    )
    .map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot write {}: {e}", path.display()),
            crate::exit::FAILURE,
        )
    })?;
    tracing::info!(target: "latch::serve", path = %path.display(), "created the demo ISV and client");
    if std::io::stdout().is_terminal() {
        output::line(&format!(
            "Demo ISV:    {DEMO_ISV}\n  Key1: {}\nDemo client: {DEMO_CLIENT}\n  Key1: {}\n(also in {}; shown this once)",
            isv_keys.key1.expose_secret(),
            client_keys.key1.expose_secret(),
            path.display()
        ));
    } else {
        output::line(&format!(
            "latch: demo credentials written to {}",
            path.display()
        ));
    }
    Ok(())
}

/// The built-in Face engine: its weights fetched into `models_dir` if missing (from the npm
/// registry, digests checked) and loaded.
async fn start_engine(
    settings: &crate::config::FaceEngineConfig,
    models_dir: &Path,
    store: Arc<dyn Store>,
    clock: Arc<dyn latch_core::Clock>,
    plain_http: bool,
) -> Result<Arc<latch_face::engine::Engine>, CliError> {
    let dir = models_dir.to_owned();
    let failed = |what: String| CliError::new("StartupFailed", what, crate::exit::FAILURE);
    if !dir.join("face-api").is_dir() {
        output::line(&format!(
            "latch: fetching the Face engine's weights ({}) into {}",
            latch_models::FACE_API.package,
            dir.display()
        ));
    }
    latch_models::ensure(&dir, &[latch_models::FACE_API])
        .await
        .map_err(|e| failed(format!("the Face engine's weights: {e}")))?;
    let model = tokio::task::spawn_blocking(move || latch_face::engine::FaceModel::load(&dir))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))?;
    tracing::info!(target: "latch::serve", models = %models_dir.display(), "built-in Face engine ready");
    Ok(Arc::new(
        latch_face::engine::Engine::new(model, store, clock, settings.image_urls.clone())
            .with_plain_http(plain_http),
    ))
}

/// The demo client's large person group `demo-staff`, with one person enrolled from a
/// public-domain portrait; what the README's device call identifies. Written to `demo.env`.
async fn enroll_demo(
    engine: &latch_face::engine::Engine,
    models_dir: &Path,
    data_dir: &Path,
    face_url: &str,
) -> Result<(), CliError> {
    let failed = |what: String| CliError::new("StartupFailed", what, crate::exit::FAILURE);
    latch_models::ensure(models_dir, &[latch_models::PHOTOS])
        .await
        .map_err(|e| failed(format!("the demo photos: {e}")))?;
    let photos = models_dir.join("photos");
    let enrolled = std::fs::read(photos.join("obama.jpg"))
        .map_err(|e| failed(format!("the demo photo: {e}")))?;
    let client = ResourceId::parse(DEMO_CLIENT).map_err(|e| CliError::usage(e.to_string()))?;
    let person = engine
        .enroll(
            &client,
            DEMO_GROUP,
            "Demo staff",
            "Barack Obama",
            enrolled.into(),
        )
        .await
        .map_err(|e| failed(format!("enrolling the demo person: {e:?}")))?;
    let path = data_dir.join(DEMO_FILE);
    let mut env = std::fs::read_to_string(&path)
        .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    env.push_str(&format!(
        "LATCH_FACE={face_url}\nDEMO_GROUP_ID={DEMO_GROUP}\nDEMO_PERSON_ID={person}\nDEMO_PHOTO={}\nDEMO_OTHER_PHOTO={}\n",
        photos.join("obama2.jpg").display(),
        photos.join("biden.jpg").display(),
    ));
    write_private(&path, env.as_bytes(), false)
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(target: "latch::serve", group = DEMO_GROUP, person = %person, "enrolled the demo person");
    Ok(())
}

fn demo_env(
    data_dir: &Path,
    sts_url: &str,
    cacert: Option<&Path>,
    isv: &NewKeys,
    client: &NewKeys,
) -> String {
    format!(
        "# latch demo credentials: secret, readable by the owner only.\n\
         # Load them into a shell with:  set -a; . {dir}/{DEMO_FILE}; set +a\n\
         LATCH_STS={url}\n\
         ISV_RESOURCE_ID={DEMO_ISV}\n\
         ISV_KEY={isv_key}\n\
         ISV_KEY2={isv_key2}\n\
         CLIENT_RESOURCE_ID={DEMO_CLIENT}\n\
         CLIENT_KEY={client_key}\n\
         CLIENT_KEY2={client_key2}\n{cacert}",
        dir = data_dir.display(),
        cacert = cacert
            .map(|p| format!("LATCH_CACERT={}\n", p.display()))
            .unwrap_or_default(),
        url = sts_url,
        isv_key = isv.key1.expose_secret(),
        isv_key2 = isv.key2.expose_secret(),
        client_key = client.key1.expose_secret(),
        client_key2 = client.key2.expose_secret(),
    )
}

#[cfg(unix)]
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// SIGINT and SIGTERM, caught from the start: one arriving before the server is ready still
/// shuts it down gracefully instead of killing it.
struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(target: "latch::serve", error = %e, "cannot watch {name}");
                    None
                }
            };
            Shutdown {
                term: watch(SignalKind::terminate(), "SIGTERM"),
                interrupt: watch(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    async fn requested(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(target: "latch::serve", "shutting down");
    }
}
