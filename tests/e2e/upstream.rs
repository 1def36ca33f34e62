//! A stand-in for an upstream Face service, on a real socket in the test process: it records
//! every request it receives and answers as the Face API would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request the upstream received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The running upstream.
pub struct Upstream {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

pub const FACE_1: &str = "c5c24a82-6845-4031-9d5d-978df9175426";
pub const FACE_2: &str = "015839fb-fbd9-4f79-ace9-7675fc2f1dd9";
pub const PERSON: &str = "25985303-c537-4467-b41d-bdb45cd95ca1";

impl Upstream {
    pub async fn start() -> Upstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(answer).with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Upstream { url, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn answer(State(log): State<Arc<Mutex<Vec<Received>>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    log.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    });
    let json = |v: serde_json::Value| {
        (
            [("content-type", "application/json; charset=utf-8")],
            v.to_string(),
        )
            .into_response()
    };
    if path.ends_with("/identify") {
        json(
            serde_json::json!([{ "faceId": FACE_1, "candidates": [{ "personId": PERSON, "confidence": 0.92 }] }]),
        )
    } else if path.ends_with("/verify") {
        json(serde_json::json!({ "isIdentical": true, "confidence": 0.87 }))
    } else if path.contains("/slow-group/") {
        tokio::time::sleep(Duration::from_secs(5)).await;
        json(serde_json::json!({}))
    } else if path.ends_with("/train") {
        (
            StatusCode::ACCEPTED,
            [("operation-location", "/face/v1.0/operations/1")],
        )
            .into_response()
    } else {
        json(serde_json::json!({}))
    }
}
