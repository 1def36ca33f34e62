//! The outermost layer: a request id for every request, and one access-log line per response.
//!
//! The id is made here, never taken from the client (a client-chosen id would end up in audit
//! records), and returned in `apim-request-id`, the header Azure uses. The access log has the
//! method, the path (never the query, which may carry `subscription-key`), the status and the
//! latency; secret headers are marked sensitive by the next layer and are never logged.

use std::fmt;
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ring::rand::{SecureRandom, SystemRandom};
use tracing::Instrument;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "apim-request-id";

/// A request's id: a random UUID (version 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id.
    pub fn new() -> Self {
        let mut b = [0u8; 16];
        // If the system generator fails, the id is all zeros; it names a request, it guards nothing.
        let _ = SystemRandom::new().fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h =
            |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
        RequestId(format!(
            "{}-{}-{}-{}-{}",
            h(0..4),
            h(4..6),
            h(6..8),
            h(8..10),
            h(10..16)
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Headers whose values may be logged; every other header is logged by name only, so a
/// credential in a header nobody thought of (a cookie, a proxy's) is never printed.
const LOGGED_VALUES: [&str; 7] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "user-agent",
    "accept",
    "host",
    "x-ms-client-request-id",
];

/// A `Debug` view of request headers for the trace log: allowed values, other names.
struct LoggedHeaders<'a>(&'a axum::http::HeaderMap);

impl fmt::Debug for LoggedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if LOGGED_VALUES.contains(&name.as_str()) && !value.is_sensitive() {
                map.entry(&name.as_str(), &value);
            } else {
                map.entry(&name.as_str(), &"<not logged>");
            }
        }
        map.finish()
    }
}

/// Middleware: assigns the request id, logs the outcome.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = RequestId::new();
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(256).collect();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    // Only allow-listed header values are logged, and never one marked sensitive by the layer
    // outside this one. The end-to-end tests run at this level and search the output for keys.
    span.in_scope(|| tracing::trace!(target: "latch::access", headers = ?LoggedHeaders(req.headers()), "request headers"));
    let start = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    span.in_scope(|| tracing::info!(target: "latch::access", status, micros, "request"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_header_values_are_logged() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("cookie", HeaderValue::from_static("session=SECRET1"));
        h.insert(
            "ocp-apim-subscription-key",
            HeaderValue::from_static("SECRET2"),
        );
        let mut marked = HeaderValue::from_static("SECRET3");
        marked.set_sensitive(true);
        h.insert("user-agent", marked);
        let shown = format!("{:?}", LoggedHeaders(&h));
        assert!(shown.contains("application/json"), "{shown}");
        assert!(shown.contains("cookie"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn ids_are_uuid_v4() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert_ne!(a, b);
        let s = a.as_str();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
    }
}
