//! Prometheus metrics: request counts and latency per service, and the audit writer's counts
//! (issuance and use by outcome), queue depth and failures.
//!
//! Recording is a few atomic additions per request, no lock. `GET /metrics` renders the text
//! exposition format on the metrics listener (`metrics.listen`), apart from the services: it
//! holds no secret, but says how busy the service is.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use latch_audit::writer::{AuditLog, AuditStats};

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Requests of one service.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    /// By status class: 1xx..5xx.
    by_class: [AtomicU64; 5],
    /// Requests at or under each bucket's bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    /// Requests over the last bound.
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl ServiceMetrics {
    /// Counts one request that ended with `status` after `elapsed`.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Every service's metrics, and the audit writer's.
#[derive(Debug, Default)]
pub struct Metrics {
    services: std::sync::Mutex<Vec<(&'static str, Arc<ServiceMetrics>)>>,
    audit: std::sync::Mutex<Option<Arc<AuditStats>>>,
    cache: std::sync::Mutex<Option<Arc<latch_store::stale::CacheStats>>>,
    connections: std::sync::Mutex<Vec<(&'static str, Arc<crate::server::ConnectionStats>)>>,
}

impl Metrics {
    /// The metrics of `service` (`sts`, `face`, `admin`), made on first use.
    pub fn service(&self, service: &'static str) -> Arc<ServiceMetrics> {
        let mut services = match self.services.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, m)) = services.iter().find(|(name, _)| *name == service) {
            return m.clone();
        }
        let m = Arc::new(ServiceMetrics::default());
        services.push((service, m.clone()));
        m
    }

    /// The connection counters of the listener of `service`, reported from now on.
    pub fn connections(&self, service: &'static str) -> Arc<crate::server::ConnectionStats> {
        let stats = Arc::new(crate::server::ConnectionStats::default());
        if let Ok(mut all) = self.connections.lock() {
            all.push((service, stats.clone()));
        }
        stats
    }

    /// Reports this audit writer's counters too (without keeping the writer running).
    pub fn watch_audit(&self, log: &AuditLog) {
        if let Ok(mut audit) = self.audit.lock() {
            *audit = Some(log.shared_stats());
        }
    }

    /// Reports how the Face front's reads were answered (with `face.store_outage = "cached"`).
    pub fn watch_cache(&self, stats: Arc<latch_store::stale::CacheStats>) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some(stats);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP latch_build_info The running version.\n# TYPE latch_build_info gauge\nlatch_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        self.render_requests(&mut out);
        self.render_audit(&mut out);
        self.render_connections(&mut out);
        self.render_cache(&mut out);
        out
    }

    /// Requests by service and status class, and their durations.
    fn render_requests(&self, out: &mut String) {
        let services = match self.services.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let _ = writeln!(*out, "# HELP latch_requests_total Requests answered, by service and status class.\n# TYPE latch_requests_total counter");
        for (service, m) in &services {
            for (i, n) in m.by_class.iter().enumerate() {
                let _ = writeln!(
                    *out,
                    "latch_requests_total{{service=\"{service}\",status=\"{}xx\"}} {}",
                    i + 1,
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(*out, "# HELP latch_request_duration_seconds Time to answer a request, by service.\n# TYPE latch_request_duration_seconds histogram");
        for (service, m) in &services {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&m.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(*out, "latch_request_duration_seconds_bucket{{service=\"{service}\",le=\"{bound}\"}} {cumulative}");
            }
            cumulative += m.over.load(Ordering::Relaxed);
            let _ = writeln!(*out, "latch_request_duration_seconds_bucket{{service=\"{service}\",le=\"+Inf\"}} {cumulative}");
            let sum = m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(*out, "latch_request_duration_seconds_sum{{service=\"{service}\"}} {sum}\nlatch_request_duration_seconds_count{{service=\"{service}\"}} {cumulative}");
        }
    }

    /// The audit writer's records, queue, commits and failures.
    fn render_audit(&self, out: &mut String) {
        let audit = self.audit.lock().ok().and_then(|a| a.clone());
        if let Some(stats) = audit {
            let _ = writeln!(*out, "# HELP latch_audit_records_total Audit records committed, by event type and outcome (issuance and use among them).\n# TYPE latch_audit_records_total counter");
            for ((kind, outcome), n) in stats.counts() {
                let _ = writeln!(
                    *out,
                    "latch_audit_records_total{{type=\"{kind}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            let _ = writeln!(*out, "# HELP latch_audit_queue_depth Records waiting for the audit writer.\n# TYPE latch_audit_queue_depth gauge\nlatch_audit_queue_depth {}", stats.queued.load(Ordering::Relaxed).max(0));
            let _ = writeln!(*out, "# HELP latch_audit_batches_total Audit commits.\n# TYPE latch_audit_batches_total counter\nlatch_audit_batches_total {}", stats.batches.load(Ordering::Relaxed));
            let _ = writeln!(*out, "# HELP latch_audit_commit_failures_total Audit commits that failed (their requests were refused).\n# TYPE latch_audit_commit_failures_total counter\nlatch_audit_commit_failures_total {}", stats.failures.load(Ordering::Relaxed));
        }
    }

    /// Each listener's open connections, and the ones it closed, by reason.
    fn render_connections(&self, out: &mut String) {
        let connections = match self.connections.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if !connections.is_empty() {
            let _ = writeln!(*out, "# HELP latch_connections_open Established connections, by listener.\n# TYPE latch_connections_open gauge");
            for (service, c) in &connections {
                let _ = writeln!(
                    *out,
                    "latch_connections_open{{service=\"{service}\"}} {}",
                    c.open.load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(*out, "# HELP latch_connections_closed_total Connections closed by the server, by listener and why: shed (idle, to make room), refused (over a bound with nothing idle), idle (idle timeout), header_timeout (a head too slow; cut); and requests answered at a timeout: body_timeout (408), request_timeout (503).\n# TYPE latch_connections_closed_total counter");
            for (service, c) in &connections {
                for (why, n) in [
                    ("shed", &c.shed),
                    ("refused", &c.refused),
                    ("idle", &c.idle_closed),
                    ("header_timeout", &c.header_timeouts),
                    ("body_timeout", &c.body_timeouts),
                    ("request_timeout", &c.request_timeouts),
                ] {
                    let _ = writeln!(
                        *out,
                        "latch_connections_closed_total{{service=\"{service}\",reason=\"{why}\"}} {}",
                        n.load(Ordering::Relaxed)
                    );
                }
            }
        }
    }

    /// How the Face front's check reads were answered.
    fn render_cache(&self, out: &mut String) {
        let cache = self.cache.lock().ok().and_then(|c| c.clone());
        if let Some(cache) = cache {
            let _ = writeln!(*out, "# HELP latch_face_store_reads_total The Face front's check reads: answered by the store (fresh), from memory during an outage (stale), or failed (missed). The cache hit ratio is stale / (stale + missed).\n# TYPE latch_face_store_reads_total counter");
            for (answer, n) in [
                ("fresh", &cache.fresh),
                ("stale", &cache.stale),
                ("missed", &cache.missed),
            ] {
                let _ = writeln!(
                    *out,
                    "latch_face_store_reads_total{{answer=\"{answer}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// Times every request of `service` through `router`.
pub fn measure(router: Router, metrics: &Metrics, service: &'static str) -> Router {
    let m = metrics.service(service);
    router.layer(axum::middleware::from_fn_with_state(m, timed))
}

async fn timed(State(m): State<Arc<ServiceMetrics>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    m.observe(response.status().as_u16(), start.elapsed());
    response
}

/// `GET /metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    m.render(),
                )
                    .into_response()
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_and_timed_per_service() {
        let metrics = Arc::new(Metrics::default());
        let app = measure(
            Router::new()
                .route("/ok", get(|| async { "ok" }))
                .route("/no", get(|| async { StatusCode::FORBIDDEN })),
            &metrics,
            "sts",
        );
        for path in ["/ok", "/ok", "/no", "/missing"] {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        let text = metrics.render();
        assert!(
            text.contains("latch_requests_total{service=\"sts\",status=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("latch_requests_total{service=\"sts\",status=\"4xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("latch_request_duration_seconds_bucket{service=\"sts\",le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("latch_request_duration_seconds_count{service=\"sts\"} 4"),
            "{text}"
        );
        // Buckets are cumulative: never decreasing.
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("latch_request_duration_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");

        let served = router(metrics.clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(served.status(), StatusCode::OK);
    }

    #[test]
    fn a_slow_request_lands_in_the_right_bucket() {
        let m = ServiceMetrics::default();
        m.observe(200, Duration::from_millis(30));
        m.observe(503, Duration::from_secs(9));
        assert_eq!(m.buckets[5].load(Ordering::Relaxed), 0, "over 25 ms");
        assert_eq!(m.buckets[6].load(Ordering::Relaxed), 1, "within 50 ms");
        assert_eq!(m.over.load(Ordering::Relaxed), 1);
        assert_eq!(m.by_class[4].load(Ordering::Relaxed), 1);
    }
}
