//! `GET /metrics` on its own listener: what happened, counted.

use crate::harness::{lat_body, Http, Server};

#[tokio::test]
async fn issuance_use_and_latency_are_counted() {
    let s = Server::start_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let url = s
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("latch: metrics listening on "))
        .expect("the metrics listener is announced")
        .trim_end_matches("/metrics")
        .to_owned();
    let d = s.demo.clone();
    let body = lat_body(&d.client_id, &["Face.Identification"]);
    assert_eq!(s.issue(Some(&d.isv_key), "", &body).await.status, 200);
    assert_eq!(
        s.issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["LimitedAccess.HighRisk"])
        )
        .await
        .status,
        400
    );
    assert_eq!(s.issue(Some("not-a-key"), "", &body).await.status, 401);

    let text = Http::new(&url)
        .request("GET", "/metrics", &[], "")
        .await
        .body;
    for line in [
        "latch_audit_records_total{type=\"limited_access_token_issued\",outcome=\"success\"} 1",
        // The wrong key is counted for the next refusal summary, not recorded on its own.
        "latch_audit_records_total{type=\"limited_access_token_refused\",outcome=\"failure\"} 1",
        "latch_requests_total{service=\"sts\",status=\"2xx\"} 1",
        "latch_requests_total{service=\"sts\",status=\"4xx\"} 2",
        "latch_request_duration_seconds_count{service=\"sts\"} 3",
        "latch_audit_queue_depth 0",
        "latch_audit_commit_failures_total 0",
        "latch_connections_closed_total{service=\"sts\",reason=\"refused\"} 0",
        "latch_connections_closed_total{service=\"sts\",reason=\"header_timeout\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    // The test's client keeps its connection to the STS; the metrics scrape has one of its own.
    assert!(
        text.lines().any(
            |l| l.starts_with("latch_connections_open{service=\"sts\"} ") && !l.ends_with(" 0")
        ),
        "{text}"
    );
    // Not a key, not a token: only counts.
    assert!(!text.contains(&d.isv_key));
    s.finish().await;
}
