//! Liveness and readiness, for load balancers and orchestrators.
//!
//! * `GET /health/live`: 200 while the process serves HTTP at all;
//! * `GET /health/ready`: 200 when the store answers and its schema is current, 503 otherwise
//!   (the database is unreachable, or migrations are pending), so a balancer stops sending
//!   requests that could only fail.
//!
//! Neither needs a credential, and neither says more than `ok` or why not.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use latch_store::Store;

/// The two probes, for merging into a service's router.
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .with_state(store)
}

async fn ready(State(store): State<Arc<dyn Store>>) -> Response {
    match store.ready().await {
        Ok(()) => "ok\n".into_response(),
        Err(e) => {
            tracing::warn!(target: "latch::health", error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the store is unavailable\n",
            )
                .into_response()
        }
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
