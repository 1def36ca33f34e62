//! One round of the well-behaved load, and what the server did meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::load::{self, Outcome, Scenario};
use crate::server::Server;

/// One round of the well-behaved load and what the server did meanwhile.
pub(super) struct Round {
    pub(super) outcome: Outcome,
    pub(super) cpu_per_request: f64,
    /// Resident memory, sampled every 100 ms: the largest and the last sample.
    pub(super) rss_peak: u64,
    pub(super) rss_last: u64,
}

pub(super) async fn round(
    server: &Server,
    sts: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    scenario: &Arc<Scenario>,
    connections: usize,
    duration: Duration,
) -> Result<Round, String> {
    let before = server.cpu();
    let load = tokio::spawn(load::run(
        sts,
        tls.clone(),
        scenario.clone(),
        connections,
        duration,
    ));
    let (mut rss_peak, mut rss_last) = (0, 0);
    while !load.is_finished() {
        rss_last = server.memory().0;
        rss_peak = rss_peak.max(rss_last);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcome = load.await.map_err(|e| e.to_string())??;
    let cpu_per_request = (server.cpu() - before).as_secs_f64() / outcome.requests.max(1) as f64;
    Ok(Round {
        outcome,
        cpu_per_request,
        rss_peak,
        rss_last,
    })
}

pub(super) fn print_round(name: &str, r: &Round, versus: Option<&Round>) {
    let o = &r.outcome;
    let ratio = versus.map_or(String::new(), |p| {
        format!(
            "  {:.1} % of unattacked",
            o.per_second() / p.outcome.per_second() * 100.0
        )
    });
    let answered = |v: String| if o.requests > 0 { v } else { "-".to_owned() };
    println!(
        "  {:<10} {:>9.0} {:>9} {:>9} {:>12} {:>7} {:>9}{ratio}",
        name,
        o.per_second(),
        answered(format!("{:.2}", o.quantile_ms(0.5))),
        answered(format!("{:.2}", o.quantile_ms(0.99))),
        answered(format!("{:.1}", r.cpu_per_request * 1e6)),
        o.errors,
        o.connect_failures,
    );
}

pub(super) fn round_json(connections: usize, name: &str, r: &Round) -> Value {
    let mut row = r
        .outcome
        .row(connections, name, r.cpu_per_request, "none", 0.0);
    if let Some(row) = row.as_object_mut() {
        row.remove("ceiling");
        row.remove("ceilingRequestsPerSecond");
        row.remove("ratio");
        row.insert("rssPeakBytes".into(), json!(r.rss_peak));
        row.insert("rssLastBytes".into(), json!(r.rss_last));
    }
    row
}
