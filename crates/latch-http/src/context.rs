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

/// Random bytes for ids, taken from the system generator this many at a time per thread: one
/// system call per 256 requests instead of one per request.
const POOL: usize = 4096;

thread_local! {
    static RANDOM: std::cell::RefCell<([u8; POOL], usize)> = const {
        std::cell::RefCell::new(([0; POOL], POOL))
    };
}

/// 16 bytes from the system generator, through this thread's pool.
fn random_16() -> [u8; 16] {
    RANDOM.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if *used + 16 > POOL {
            // If the system generator fails, the bytes stay as they were; an id names a
            // request, it guards nothing.
            let _ = SystemRandom::new().fill(bytes);
            *used = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&bytes[*used..*used + 16]);
        // Each byte is handed out once.
        bytes[*used..*used + 16].fill(0);
        *used += 16;
        out
    })
}

impl RequestId {
    /// A fresh random id.
    pub fn new() -> Self {
        let mut b = random_16();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(36);
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                text.push('-');
            }
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        RequestId(text)
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

    #[test]
    fn ids_stay_well_formed_and_distinct_across_many_pool_refills() {
        let n = 20 * POOL / 16;
        let ids: std::collections::HashSet<String> = (0..n).map(|_| RequestId::new().0).collect();
        assert_eq!(ids.len(), n);
        for id in &ids {
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(id
                .bytes()
                .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
    }
}
