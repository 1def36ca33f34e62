//! The load generator: N keep-alive HTTPS connections, each sending its next request as soon
//! as the previous answer is read, for a fixed time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// What one request looks like; `token` picks the token for request `i` (or none).
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
    /// Tokens to send in `LimitedAccessToken`, one per request in turn (cycling).
    pub(crate) tokens: Arc<Vec<String>>,
    /// The status a correct answer has.
    pub(crate) expect: u16,
}

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) requests: u64,
    /// Requests answered with another status than the scenario's, or not answered, and
    /// connections that could not be made.
    pub(crate) errors: u64,
    /// Of `errors`, the connections that could not be made (TCP, TLS or HTTP set-up failed);
    /// the connection is tried again after [`RECONNECT_PAUSE`].
    pub(crate) connect_failures: u64,
    pub(crate) elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub(crate) latencies: Vec<u32>,
}

impl Outcome {
    pub(crate) fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The report's row for a run: `connections`, the scenario's name, what it measured and the
    /// ceiling it is compared with; callers add their own fields.
    pub(crate) fn row(
        &self,
        connections: usize,
        name: &str,
        cpu_secs: f64,
        ceiling_name: &str,
        ceiling: f64,
    ) -> serde_json::Value {
        serde_json::json!({
            "connections": connections,
            "scenario": name,
            "requestsPerSecond": self.per_second(),
            "p50Ms": self.quantile_ms(0.5),
            "p99Ms": self.quantile_ms(0.99),
            "serverCpuMicrosPerRequest": cpu_secs * 1e6,
            "errors": self.errors,
            "connectFailures": self.connect_failures,
            "requests": self.requests,
            "ceiling": ceiling_name,
            "ceilingRequestsPerSecond": ceiling,
            "ratio": self.per_second() / ceiling,
        })
    }

    /// The `q`-th quantile latency, in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
}

/// Drives `scenario` against `addr` over `connections` connections for `duration`.
pub(crate) async fn run(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    scenario: Arc<Scenario>,
    connections: usize,
    duration: Duration,
) -> Result<Outcome, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (tls, scenario, stop, next) =
            (tls.clone(), scenario.clone(), stop.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            connection(addr, tls, &scenario, &stop, &next).await
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcome = Outcome::default();
    for task in tasks {
        let counts = task.await.map_err(|e| e.to_string())??;
        let mut latencies = counts.latencies;
        outcome.requests += counts.requests;
        outcome.errors += counts.errors;
        outcome.connect_failures += counts.connect_failures;
        outcome.latencies.append(&mut latencies);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort_unstable();
    Ok(outcome)
}

/// How long a connection that could not be made, or was closed by the server, waits before it
/// is tried again.
pub(crate) const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What one connection counted.
struct Counts {
    requests: u64,
    errors: u64,
    connect_failures: u64,
    latencies: Vec<u32>,
}

/// A keep-alive HTTP/1.1 connection over TLS to `addr`, its driver spawned.
pub(crate) async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn connection(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    scenario: &Scenario,
    stop: &AtomicBool,
    next: &AtomicUsize,
) -> Result<Counts, String> {
    let mut counts = Counts {
        requests: 0,
        errors: 0,
        connect_failures: 0,
        latencies: Vec::new(),
    };
    // None until connected, and again after the server closed the connection.
    let mut open = None;
    while !stop.load(Ordering::Relaxed) {
        let mut sender = match open.take() {
            Some(sender) => sender,
            None => match connect(addr, tls.clone()).await {
                Ok(sender) => sender,
                Err(_) => {
                    counts.errors += 1;
                    counts.connect_failures += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let mut request = Request::builder()
            .method(scenario.method)
            .uri(scenario.path)
            .header("host", addr.to_string());
        for (name, value) in &scenario.headers {
            request = request.header(*name, value);
        }
        if !scenario.tokens.is_empty() {
            let i = next.fetch_add(1, Ordering::Relaxed) % scenario.tokens.len();
            request = request.header(
                "LimitedAccessToken",
                format!("Bearer {}", scenario.tokens[i]),
            );
        }
        let request = request
            .body(Full::new(scenario.body.clone()))
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.into_body().collect().await.is_ok() && status == scenario.expect
            }
            Err(_) => false,
        };
        counts
            .latencies
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        counts.requests += 1;
        if !ok {
            counts.errors += 1;
            if sender.ready().await.is_err() {
                // Closed: a new connection for the next request.
                continue;
            }
        }
        open = Some(sender);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_sorted_latencies() {
        let outcome = Outcome {
            requests: 100,
            errors: 0,
            connect_failures: 0,
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(|i| i * 1000).collect(),
        };
        assert_eq!(outcome.per_second(), 50.0);
        assert_eq!(outcome.quantile_ms(0.5), 51.0);
        assert_eq!(outcome.quantile_ms(0.99), 99.0);
        assert_eq!(Outcome::default().quantile_ms(0.99), 0.0);
    }
}
