//! Liveness and readiness, for load balancers and orchestrators.
//!
//! * `GET /health/live`: 200 while the process serves HTTP at all;
//! * `GET /health/ready`: 200 when the store answers and its schema is current, 503 otherwise
//!   (the database is unreachable, or migrations are pending), so a balancer stops sending
//!   requests that could only fail.
//!
//! Neither needs a credential, and neither says more than `ok` or not. Readiness asks the
//! store at most once a second, with a deadline, whatever the rate of probes: an anonymous
//! caller cannot tie up database connections with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use latch_store::Store;

/// How long a readiness answer is reused.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// How long the store has to answer.
const DEADLINE: Duration = Duration::from_secs(3);

struct Probe {
    store: Arc<dyn Store>,
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// When "not ready" was last logged.
    logged: Mutex<Option<Instant>>,
}

/// The two probes, for merging into a service's router.
pub fn router(store: Arc<dyn Store>) -> Router {
    let probe = Arc::new(Probe {
        store,
        last: tokio::sync::Mutex::new(None),
        logged: Mutex::new(None),
    });
    Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .with_state(probe)
}

async fn ready(State(probe): State<Arc<Probe>>) -> Response {
    // One probe asks the store; those arriving meanwhile wait for its answer.
    let mut last = probe.last.lock().await;
    let ok = match *last {
        Some((at, ok)) if at.elapsed() < FRESH_FOR => ok,
        _ => {
            let result = tokio::time::timeout(DEADLINE, probe.store.ready()).await;
            let ok = matches!(result, Ok(Ok(())));
            if !ok {
                let mut logged = probe.logged.lock().unwrap_or_else(|p| p.into_inner());
                if logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    *logged = Some(Instant::now());
                    let error = match result {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer within the deadline".into(),
                    };
                    tracing::warn!(target: "latch::health", %error, "not ready");
                }
            }
            *last = Some((Instant::now(), ok));
            ok
        }
    };
    if ok {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store is unavailable\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(router: &Router, path: &str) -> StatusCode {
        router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn ready_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = latch_store::sqlite::SqliteStore::open(
            dir.path(),
            "main",
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let router = router(Arc::new(store));
        assert_eq!(status(&router, "/health/live").await, StatusCode::OK);
        assert_eq!(status(&router, "/health/ready").await, StatusCode::OK);

        // A database that does not answer: not ready, still alive.
        let gone = latch_store::postgres::PgStore::connect_only(
            "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1",
            "main",
        )
        .unwrap();
        let router = super::router(Arc::new(gone));
        assert_eq!(status(&router, "/health/live").await, StatusCode::OK);
        assert_eq!(
            status(&router, "/health/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
