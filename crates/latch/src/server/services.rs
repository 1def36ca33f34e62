//! Each service on its listener: the STS, the Face front, the admin API and the metrics, and the
//! background tasks beside them (certificate renewal, maintenance), stopped together.

use std::sync::Arc;

use latch_audit::signer::CheckpointPolicy;
use latch_audit::writer::AuditLog;
use latch_face::backend::Backend;
use latch_face::FaceState;
use latch_http::metrics::Metrics;
use latch_http::server::{ConnectionLimits, ConnectionStats};
use latch_store::check_cache::CheckCache;
use latch_store::Store;
use latch_sts::{AppState, StsConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::maintenance::{maintain, Maintenance};
use super::{startup_failed, Listeners, Shared, Urls};
use crate::config::Config;
use crate::output::{self, CliError};
use crate::tls::Tls;

/// The tasks that serve, and the switch that stops them.
pub(super) struct Servers {
    config: Config,
    shared: Shared,
    audit: AuditLog,
    tls: Option<Arc<Tls>>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    tasks: JoinSet<std::io::Result<()>>,
}

impl Servers {
    pub(super) fn new(
        config: &Config,
        shared: &Shared,
        audit: &AuditLog,
        tls: Option<Arc<Tls>>,
    ) -> Servers {
        let metrics = Arc::new(Metrics::default());
        metrics.watch_audit(audit);
        let (stop, stopped) = watch::channel(false);
        Servers {
            config: config.clone(),
            shared: shared.clone(),
            audit: audit.clone(),
            tls,
            metrics,
            stop,
            stopped,
            tasks: JoinSet::new(),
        }
    }

    /// Starts a service on each listener there is.
    pub(super) async fn spawn_all(
        &mut self,
        listeners: Listeners,
        urls: &Urls,
        backend: Backend,
        writers: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), CliError> {
        if let Some(listener) = listeners.sts {
            self.spawn_sts(listener, urls).await?;
        }
        if let Some(listener) = listeners.face {
            self.spawn_face(listener, backend, writers).await?;
        }
        if let Some(listener) = listeners.admin {
            self.spawn_admin(listener).await?;
        }
        if let Some(listener) = listeners.metrics {
            self.spawn_metrics(listener)?;
        }
        Ok(())
    }

    async fn spawn_sts(&mut self, listener: TcpListener, urls: &Urls) -> Result<(), CliError> {
        let config = &self.config;
        let sts_config = StsConfig {
            issuer: config.sts.issuer.clone(),
            region: config.sts.region.clone(),
            public_url: urls.sts_public.clone(),
            limits: config.sts.limits.clone(),
        };
        let state = AppState::new(
            CheckCache::new(self.shared.context.store.clone(), config.store.recheck),
            self.audit.clone(),
            self.shared.ring.clone(),
            self.shared.context.clock.clone(),
            sts_config,
        )
        .await?;
        announce("STS", &listener, self.tls.as_deref())?;
        // Refusals without a valid key are written as summaries: every interval, and once
        // more when the STS has answered its last request.
        let summaries = state.refusal_summaries();
        self.tasks.spawn({
            let summaries = summaries.clone();
            let stopped = self.stopped.clone();
            async move {
                summaries.run(stopped).await;
                Ok(())
            }
        });
        let router = self.measured(latch_sts::router(state), "sts");
        let serving = self.serve_until(listener, router, config.server.limits, "sts", true);
        self.tasks.spawn(async move {
            let served = serving.await;
            summaries.flush().await;
            served
        });
        Ok(())
    }

    async fn spawn_face(
        &mut self,
        listener: TcpListener,
        backend: Backend,
        writers: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), CliError> {
        let unconfigured = matches!(backend, Backend::Unconfigured);
        let (checks, face_audit) = self.face_checks(writers);
        let config = &self.config;
        let state = FaceState::new(
            checks,
            face_audit,
            self.shared.verifiers.clone(),
            self.shared.context.clock.clone(),
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
        if unconfigured {
            tracing::warn!(target: "latch::serve", "no Face backend configured (face.upstream_url): allowed calls are answered 501");
        }
        announce("Face front", &listener, self.tls.as_deref())?;
        let router = self.measured(latch_face::router(state), "face");
        let limits = config.server.without_request_timeout();
        let serving = self.serve_until(listener, router, limits, "face", true);
        self.tasks.spawn(serving);
        Ok(())
    }

    /// The Face front's checks and its audit writer. Closed (the default): it shares the store
    /// and the audit writer. Cached: its checks read through a memory of recent answers, and its
    /// usage records go to a writer of their own that spools them while the store fails.
    fn face_checks(&self, writers: &mut Vec<JoinHandle<()>>) -> (CheckCache, AuditLog) {
        let config = &self.config;
        let store = self.shared.context.store.clone();
        let Some(bound) = config.face.outage_secs else {
            return (
                CheckCache::new(store, config.store.recheck),
                self.audit.clone(),
            );
        };
        let cached = latch_store::stale::StaleIfError::new(
            store.clone(),
            self.shared.context.clock.clone(),
            bound,
        );
        self.metrics.watch_cache(cached.stats());
        let spool = config
            .data_dir
            .join(format!("audit-spool-{}.jsonl", config.audit.chain));
        let (log, writer) = AuditLog::spawn_spooled(
            store,
            config.audit.chain.clone(),
            latch_audit::writer::Spool::at(spool),
        );
        writers.push(writer);
        tracing::warn!(target: "latch::serve", bound_secs = bound, "face.store_outage = cached: while the store fails, the Face front accepts what it read up to {bound} s before");
        // Answers in use are read again within half the outage bound, so the memory holds them,
        // at most half the bound old, when an outage starts; and each token's revocation is
        // asked for, since the memory can answer only what it was asked.
        let checks = CheckCache::with_limits(
            Arc::new(cached) as Arc<dyn Store>,
            config.store.recheck,
            std::time::Duration::from_millis(bound.unsigned_abs() * 500),
            0,
        );
        (checks, log)
    }

    async fn spawn_admin(&mut self, listener: TcpListener) -> Result<(), CliError> {
        let ctx = self.shared.context.clone();
        let router = self.measured(latch_admin::http::router(ctx).await?, "admin");
        announce("admin API", &listener, self.tls.as_deref())?;
        let serving = self.serve_until(listener, router, self.config.server.limits, "admin", true);
        self.tasks.spawn(serving);
        Ok(())
    }

    fn spawn_metrics(&mut self, listener: TcpListener) -> Result<(), CliError> {
        let addr = listener
            .local_addr()
            .map_err(|e| startup_failed(format!("listener: {e}")))?;
        tracing::info!(target: "latch::serve", %addr, "metrics listening");
        output::line(&format!(
            "latch: metrics listening on http://{addr}/metrics"
        ));
        let router = latch_http::metrics::router(self.metrics.clone());
        let serving = self.serve_until(
            listener,
            router,
            self.config.server.limits,
            "metrics",
            false,
        );
        self.tasks.spawn(serving);
        Ok(())
    }

    /// Certificate renewal: on SIGHUP, or when the files change.
    pub(super) fn spawn_renewal(&mut self, tls: Option<(Arc<Tls>, latch_tls::FileWatch)>) {
        self.tasks.spawn(crate::tls::renew(
            tls,
            crate::tls::hangup_signal(),
            self.audit.clone(),
            self.shared.context.clock.clone(),
            self.stopped.clone(),
        ));
    }

    /// The keys reloaded, checkpoints signed, revocations pruned.
    pub(super) fn spawn_maintenance(&mut self) {
        let (config, shared) = (&self.config, &self.shared);
        self.tasks.spawn(maintain(
            Maintenance {
                audit: shared.context.audit.clone(),
                chain: config.audit.chain.clone(),
                checkpoints: CheckpointPolicy::new(
                    config.audit.checkpoint_every_records,
                    config.audit.checkpoint_every_secs,
                ),
                store: shared.context.store.clone(),
                rng: shared.context.rng.clone(),
                clock: shared.context.clock.clone(),
                ring: shared.ring.clone(),
                verifiers: shared.verifiers.clone(),
                issuer: config.sts.issuer.clone(),
                leeway_secs: config.face.leeway_secs,
            },
            self.stopped.clone(),
        ));
    }

    /// Stops every task and waits for them; the audit handles go with them.
    pub(super) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while let Some(result) = self.tasks.join_next().await {
            if let Ok(Err(e)) = result {
                tracing::error!(target: "latch::serve", error = %e, "server failed");
            }
        }
    }

    /// `router` with its requests counted under `service`, and the health routes beside it.
    fn measured(&self, router: axum::Router, service: &'static str) -> axum::Router {
        latch_http::metrics::measure(router, &self.metrics, service).merge(
            latch_http::health::router(self.shared.context.store.clone()),
        )
    }

    /// Serves `router` on `listener` (over TLS when configured and `tls`) within `limits` until
    /// stopped, then finishes the requests in flight.
    fn serve_until(
        &self,
        listener: TcpListener,
        router: axum::Router,
        limits: ConnectionLimits,
        service: &'static str,
        tls: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> {
        let stats: Arc<ConnectionStats> = self.metrics.connections(service);
        let mut stopped = self.stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        match self.tls.as_deref().filter(|_| tls) {
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
}

/// Says where a service listens (and warns when it is plain HTTP).
fn announce(what: &str, listener: &TcpListener, tls: Option<&Tls>) -> Result<(), CliError> {
    let addr = listener
        .local_addr()
        .map_err(|e| startup_failed(format!("listener: {e}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(target: "latch::serve", %addr, scheme, "{what} listening");
    output::line(&format!("latch: {what} listening on {scheme}://{addr}"));
    if tls.is_none() {
        crate::tls::warn_plain_http(what, addr);
    }
    Ok(())
}
