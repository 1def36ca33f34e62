//! `hostile`: the STS under a connection attack, on a server of its own.
//!
//! The server is configured as the other scenarios' ([`Server::start`]): the default
//! connection bounds and timeouts (`[server]` left out), the STS rate limits lifted, since all
//! the well-behaved load comes from one key on one address (loopback).
//!
//! 1. `issuance` (the scenario of the same name) over each `--connections` count, from
//!    127.0.0.1: the unattacked figures.
//! 2. The attack, on the STS listener, from 127.0.0.2 onwards, at most [`PER_ADDRESS`]
//!    connections an address: [`IDLE_PLAIN`] TCP connections that stay silent (not even a TLS
//!    ClientHello), [`IDLE_TLS`] that complete the TLS handshake and stay silent, and
//!    [`SLOWLORIS`] that complete it and then send a request head one byte a second, never
//!    ending it. Each is opened again [`REOPEN_AFTER`] after the server closes it (or fails to
//!    accept it), so the pressure lasts. After every slot has made its first attempt, the
//!    attack runs [`ATTACK_WARM_UP`] (past the header and handshake timeouts, so the server
//!    has begun cutting and the attack re-opening) before anything is measured.
//! 3. `issuance` again, the same counts, while the attack goes on: the ratio to step 1, p99,
//!    failed requests (any status but 200, no answer, or a connection that could not be made),
//!    the server's resident memory (`VmRSS`, sampled every 100 ms).
//! 4. The attack stops. [`FLOOD`] `issueLimitedAccessToken` requests without a key or with a
//!    wrong one, from [`FLOOD_ADDRESSES`] addresses. The server is then stopped gracefully
//!    (SIGTERM: it writes its pending refusal summaries) and the audit records added since
//!    before the flood are counted in its store, by type.
//!
//! What the server did with the attack's connections comes from its metrics
//! (`latch_connections_closed_total` of the STS listener, by reason). Whether its log
//! (standard error) says "Too many open files" is checked at the end. Each target is printed
//! as a pass/fail line.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{json, Value};

use crate::load::Scenario;
use crate::server::Server;

mod attack;
mod flood;
mod rounds;

use attack::{attack_source, ip_after, Attack};
use flood::{audit_added, audit_heads, flood, Flood};
use rounds::{print_round, round, round_json, Round};

/// Silent TCP connections: connected, nothing sent.
const IDLE_PLAIN: usize = 2_500;
/// Silent TLS connections: handshake done, nothing sent.
const IDLE_TLS: usize = 2_500;
/// TLS connections sending a request head one byte a second.
const SLOWLORIS: usize = 200;
/// Attack connections per source address, at most (the server's own bound is 256).
const PER_ADDRESS: usize = 100;
/// How long an attack connection waits to open again after the server closed it.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Attack connections being opened at once (the kernel's accept queue is finite).
const OPENING: usize = 64;
/// How long a connect or a TLS handshake may take before the attempt counts as failed.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// How long the attack runs before the attacked rounds, once every slot has tried once.
const ATTACK_WARM_UP: Duration = Duration::from_secs(12);
/// Refused requests in the anonymous flood.
const FLOOD: u64 = 100_000;
/// The flood's connections, and the addresses they come from (127.0.1.1, 127.0.1.2, ...).
const FLOOD_CONNECTIONS: usize = 32;
const FLOOD_ADDRESSES: usize = 8;

/// The targets.
const MIN_RATIO: f64 = 0.80;
const MAX_P99_MS: f64 = 50.0;
const MAX_RSS_BYTES: u64 = 200_000_000;
const MAX_FLOOD_RECORDS: u64 = 1_000;

/// Raises this process's soft limit on open files to the hard one if it is under `needed`;
/// the limit now, or why it cannot be enough.
fn raise_open_files(needed: u64) -> Result<u64, String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(soft);
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < needed {
        return Err(format!(
            "the hard limit on open files (RLIMIT_NOFILE) is {hard}, under the {needed} this attack needs; raise it (ulimit -Hn, or LimitNOFILE= in systemd) and run again"
        ));
    }
    let raised = limit.maximum.unwrap_or(needed);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        },
    )
    .map_err(|e| {
        format!("cannot raise the soft limit on open files from {soft} to {raised}: {e}")
    })?;
    Ok(raised)
}

/// The value of the metric line that starts with `name` (name and labels), if any.
fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// `latch_connections_closed_total` of the STS listener, by reason.
fn sts_closes(page: &str) -> BTreeMap<String, u64> {
    const PREFIX: &str = "latch_connections_closed_total{service=\"sts\",reason=\"";
    page.lines()
        .filter_map(|l| {
            let (reason, value) = l.strip_prefix(PREFIX)?.split_once("\"} ")?;
            Some((reason.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Runs the scenario against a new server started from `latch`; its report.
pub(crate) async fn bench(
    latch: &Path,
    connections: &[usize],
    duration: Duration,
) -> Result<Value, String> {
    let most = connections.iter().copied().max().unwrap_or(0);
    let needed = (Attack::SLOTS + most + FLOOD_CONNECTIONS + 256) as u64;
    let open_files = match raise_open_files(needed) {
        Ok(limit) => limit,
        Err(why) => {
            println!("\nhostile: skipped: {why}");
            return Ok(json!({ "skipped": why }));
        }
    };
    let mut target = Target::start(latch, open_files)?;

    // 1. Unattacked.
    let plain = target.rounds(connections, duration).await?;

    // 2. The attack.
    let closed_before = sts_closes(&target.server.metrics_page()?);
    let attack = start_attack(&target).await;

    // 3. Attacked.
    let attacked = target.rounds(connections, duration).await?;
    let seen = AttackSeen::read(&target.server, &attack, &closed_before)?;
    attack.stop().await;
    let rows = print_rounds(connections, &plain, &attacked);
    let rss_peak = print_attack_seen(&seen, &attacked);

    // 4. The anonymous flood, then a graceful stop and the records it left.
    let (flooded, exit) = flood_and_stop(&mut target).await?;
    let emfile = target
        .server
        .log()
        .to_lowercase()
        .contains("too many open files");

    let targets = targets(
        connections,
        &plain,
        &attacked,
        rss_peak,
        emfile,
        flooded.added,
    );
    println!("hostile targets:");
    for (ok, line) in &targets {
        println!("  {}  {line}", verdict(*ok));
    }
    exit?;
    Ok(Report {
        open_files,
        seen,
        rows,
        rss_peak,
        emfile,
        flooded,
        targets,
    }
    .json())
}

/// The server under attack, and what the well-behaved load needs to reach its STS.
struct Target {
    server: Server,
    sts: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    /// The demo client resource, which the flood's requests name.
    client: String,
    scenario: Arc<Scenario>,
}

impl Target {
    /// Starts a server of its own from `latch`, and says so.
    fn start(latch: &Path, open_files: u64) -> Result<Target, String> {
        let server = Server::start(latch, None)?;
        let tls = Arc::new(crate::trust(
            &server.data_dir().join("tls").join("dev-cert.pem"),
        )?);
        let sts = crate::addr(&server.sts)?;
        let client = server.demo("CLIENT_RESOURCE_ID")?;
        let scenario = Arc::new(crate::issuance(&server.demo("ISV_KEY")?, &client));
        println!(
            "\nhostile: a server of its own (default connection bounds, rate limits lifted), ready in {} ms, {:.1} MB resident; this process may open {open_files} files",
            server.startup.as_millis(),
            server.memory().0 as f64 / 1e6,
        );
        Ok(Target {
            server,
            sts,
            tls,
            client,
            scenario,
        })
    }

    /// A round of issuance at each connection count.
    async fn rounds(
        &self,
        connections: &[usize],
        duration: Duration,
    ) -> Result<Vec<Round>, String> {
        let mut out = Vec::new();
        for &n in connections {
            out.push(
                round(
                    &self.server,
                    self.sts,
                    &self.tls,
                    &self.scenario,
                    n,
                    duration,
                )
                .await?,
            );
        }
        Ok(out)
    }
}

/// Starts the attack on the STS, waits for every slot to try and then [`ATTACK_WARM_UP`],
/// saying how it goes.
async fn start_attack(target: &Target) -> Attack {
    let last_source = attack_source(Attack::SLOTS - 1);
    println!(
        "hostile: attack on the STS: {IDLE_PLAIN} silent TCP, {IDLE_TLS} silent TLS and {SLOWLORIS} slowloris (a header byte a second) connections from 127.0.0.2-{last_source}, at most {PER_ADDRESS} an address, each opened again {} s after the server closes it",
        REOPEN_AFTER.as_secs()
    );
    let attack = Attack::start(target.sts, target.tls.clone());
    let all_tried = attack.tried_all(Duration::from_secs(60)).await;
    println!(
        "hostile: {} slots tried to connect in {:.1} s{}; open now: {}",
        attack.tried.load(Ordering::Relaxed),
        attack.started.elapsed().as_secs_f64(),
        if all_tried {
            ""
        } else {
            " (not all of them within 60 s)"
        },
        attack.by_kind(|t| &t.open),
    );
    tokio::time::sleep(ATTACK_WARM_UP).await;
    println!(
        "hostile: after {:.0} s of attack, open: {}; closed by the server so far: {}; failed to open: {}",
        attack.started.elapsed().as_secs_f64(),
        attack.by_kind(|t| &t.open),
        attack.by_kind(|t| &t.closed),
        attack.by_kind(|t| &t.failed),
    );
    attack
}

/// What the attack and the server's STS listener went through, read before the attack stops.
struct AttackSeen {
    /// Connections the server closed during the attack, by reason.
    server_closes: BTreeMap<String, u64>,
    /// Connections open on the STS listener at the end.
    server_open: Option<u64>,
    report: Value,
    line: String,
}

impl AttackSeen {
    fn read(
        server: &Server,
        attack: &Attack,
        closed_before: &BTreeMap<String, u64>,
    ) -> Result<AttackSeen, String> {
        let page = server.metrics_page()?;
        let closed_by_server = sts_closes(&page);
        let server_closes = closed_by_server
            .iter()
            .map(|(why, n)| {
                (
                    why.clone(),
                    n - closed_before.get(why).copied().unwrap_or(0),
                )
            })
            .collect::<BTreeMap<_, _>>();
        let server_open = metric(&page, "latch_connections_open{service=\"sts\"}");
        let attack_open = attack.by_kind(|t| &t.open);
        let report = attack.json();
        let line = format!(
            "hostile: the attack over {:.0} s: opened {}; closed by the server {}; failed to open {}; open at the end {attack_open}",
            attack.started.elapsed().as_secs_f64(),
            attack.by_kind(|t| &t.opened),
            attack.by_kind(|t| &t.closed),
            attack.by_kind(|t| &t.failed),
        );
        Ok(AttackSeen {
            server_closes,
            server_open,
            report,
            line,
        })
    }
}

/// Prints the unattacked and attacked rounds side by side; their rows for the report.
fn print_rounds(connections: &[usize], plain: &[Round], attacked: &[Round]) -> Vec<Value> {
    println!(
        "\n  {:<10} {:>9} {:>9} {:>9} {:>12} {:>7} {:>9}",
        "issuance", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors", "no conn"
    );
    let mut rows = Vec::new();
    for ((&n, p), a) in connections.iter().zip(plain).zip(attacked) {
        println!("  {n} connections:");
        print_round("unattacked", p, None);
        print_round("attacked", a, Some(p));
        rows.push(round_json(n, "unattacked", p));
        let mut row = round_json(n, "attacked", a);
        row["ratioToUnattacked"] = json!(a.outcome.per_second() / p.outcome.per_second());
        rows.push(row);
    }
    rows
}

/// Prints what the attack did to the connections and to the server's memory; the peak of its
/// resident memory.
fn print_attack_seen(seen: &AttackSeen, attacked: &[Round]) -> u64 {
    println!("{}", seen.line);
    println!(
        "hostile: the STS listener, from its metrics: {} connections open at the end of the attack; closed during it: {}",
        seen.server_open.map_or("?".to_owned(), |n| n.to_string()),
        seen.server_closes
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rss_peak = attacked.iter().map(|r| r.rss_peak).max().unwrap_or(0);
    let rss_last = attacked.last().map_or(0, |r| r.rss_last);
    println!(
        "hostile: server memory during the attacked rounds: {:.1} MB resident at most (VmRSS every 100 ms), {:.1} MB at the end",
        rss_peak as f64 / 1e6,
        rss_last as f64 / 1e6
    );
    rss_peak
}

/// The anonymous flood and what the server recorded of it.
struct Flooded {
    flood: Flood,
    /// Audit records added, how many of each type, and the refusals they count.
    added: u64,
    types: BTreeMap<String, u64>,
    refusals: u64,
}

/// Floods the STS with anonymous requests, stops the server gracefully, and counts the audit
/// records the flood left; says what it found. How the server ended is returned beside.
async fn flood_and_stop(
    target: &mut Target,
) -> Result<(Flooded, Result<std::process::ExitStatus, String>), String> {
    let server = &mut target.server;
    let before = audit_heads(&server.data_dir()).await?;
    let body = Bytes::from(
        json!({"targetAzureResourceId": target.client, "featureFlags": ["Face.Identification"]})
            .to_string(),
    );
    let flooded = flood(target.sts, &target.tls, body).await?;
    let statuses = flooded
        .statuses
        .iter()
        .map(|(s, n)| format!("{s} x {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "hostile: flood of {FLOOD} issueLimitedAccessToken without a key or with a wrong one, {FLOOD_CONNECTIONS} connections from {FLOOD_ADDRESSES} addresses (127.0.1.1-{}), in {:.1} s ({:.0} req/s): {statuses}; unanswered {}, connections not made {}",
        ip_after(Ipv4Addr::new(127, 0, 1, 1), FLOOD_ADDRESSES - 1),
        flooded.elapsed.as_secs_f64(),
        FLOOD as f64 / flooded.elapsed.as_secs_f64(),
        flooded.unanswered,
        flooded.connect_failures,
    );
    let exit = tokio::task::block_in_place(|| server.stop(Duration::from_secs(60)));
    let (added, types, refusals) = audit_added(&server.data_dir(), &before).await?;
    let types_line = types
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let typed: u64 = types.values().sum();
    println!(
        "hostile: audit records added by the flood, the server stopped ({}): {added} ({}{types_line}); the refusals_counted records count {refusals} refusals",
        match &exit {
            Ok(status) => status.to_string(),
            Err(e) => e.clone(),
        },
        if typed < added {
            format!("of the first {typed}: ")
        } else {
            String::new()
        },
    );
    let flooded = Flooded {
        flood: flooded,
        added,
        types,
        refusals,
    };
    Ok((flooded, exit))
}

/// The pass/fail targets, each with the line that says how it went.
fn targets(
    connections: &[usize],
    plain: &[Round],
    attacked: &[Round],
    rss_peak: u64,
    emfile: bool,
    added: u64,
) -> Vec<(bool, String)> {
    let mut targets = load_targets(connections, plain, attacked);
    targets.extend([
        (
            rss_peak > 0 && rss_peak < MAX_RSS_BYTES,
            format!(
                "server resident memory under attack < {} MB: {:.1} MB at most",
                MAX_RSS_BYTES / 1_000_000,
                rss_peak as f64 / 1e6
            ),
        ),
        (
            !emfile,
            format!(
                "no \"Too many open files\" in the server's log: {}",
                if emfile { "present" } else { "absent" }
            ),
        ),
        (
            added < MAX_FLOOD_RECORDS,
            format!(
                "{FLOOD} refused anonymous requests add < {MAX_FLOOD_RECORDS} audit records: {added}"
            ),
        ),
    ]);
    targets
}

/// The targets of the well-behaved load under attack: throughput, p99, and no failures.
fn load_targets(connections: &[usize], plain: &[Round], attacked: &[Round]) -> Vec<(bool, String)> {
    let worst_ratio = plain
        .iter()
        .zip(attacked)
        .map(|(p, a)| a.outcome.per_second() / p.outcome.per_second())
        .fold(f64::INFINITY, f64::min);
    // No request at all has no p99 to meet the target with.
    let worst_p99 = attacked
        .iter()
        .map(|a| {
            if a.outcome.requests == 0 {
                f64::INFINITY
            } else {
                a.outcome.quantile_ms(0.99)
            }
        })
        .fold(0.0, f64::max);
    let failed: u64 = attacked.iter().map(|a| a.outcome.errors).sum();
    let per_count = |f: &dyn Fn(usize, &Round, &Round) -> String| {
        connections
            .iter()
            .zip(plain)
            .zip(attacked)
            .map(|((&n, p), a)| f(n, p, a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        (
            worst_ratio >= MIN_RATIO,
            format!(
                "attacked issuance throughput >= {:.0} % of unattacked: {}",
                MIN_RATIO * 100.0,
                per_count(&|n, p, a| format!(
                    "{:.1} % at {n} connections",
                    a.outcome.per_second() / p.outcome.per_second() * 100.0
                ))
            ),
        ),
        (
            worst_p99 < MAX_P99_MS,
            format!(
                "attacked issuance p99 < {MAX_P99_MS:.0} ms: {}",
                per_count(&|n, _, a| if a.outcome.requests == 0 {
                    format!("no request served at {n} connections")
                } else {
                    format!("{:.2} ms at {n} connections", a.outcome.quantile_ms(0.99))
                })
            ),
        ),
        (
            failed == 0,
            format!(
                "no failed request under attack: {}",
                per_count(&|n, _, a| format!(
                    "{} at {n} connections ({} of them connections not made)",
                    a.outcome.errors, a.outcome.connect_failures
                ))
            ),
        ),
    ]
}

/// What the report is made of.
struct Report {
    open_files: u64,
    seen: AttackSeen,
    rows: Vec<Value>,
    rss_peak: u64,
    emfile: bool,
    flooded: Flooded,
    targets: Vec<(bool, String)>,
}

impl Report {
    /// The scenario's report.
    fn json(self) -> Value {
        json!({
            "openFilesLimit": self.open_files,
            "attack": {
                "silentTcp": IDLE_PLAIN,
                "silentTls": IDLE_TLS,
                "slowloris": SLOWLORIS,
                "perAddress": PER_ADDRESS,
                "reopenAfterSecs": REOPEN_AFTER.as_secs(),
                "warmUpSecs": ATTACK_WARM_UP.as_secs(),
                "connections": self.seen.report,
                "stsOpenAtEnd": self.seen.server_open,
                "stsClosedByServer": self.seen.server_closes,
            },
            "rounds": self.rows,
            "rssPeakBytes": self.rss_peak,
            "tooManyOpenFiles": self.emfile,
            "flood": {
                "requests": FLOOD,
                "statuses": self.flooded.flood.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "unanswered": self.flooded.flood.unanswered,
                "seconds": self.flooded.flood.elapsed.as_secs_f64(),
                "auditRecordsAdded": self.flooded.added,
                "auditRecordTypes": self.flooded.types,
                "refusalsCounted": self.flooded.refusals,
            },
            "targets": self.targets.iter().map(|(ok, line)| json!({"pass": ok, "target": line})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::attack::{attack_kind, slow_byte, Kind};
    use super::*;

    #[test]
    fn the_attack_has_its_counts_and_no_address_holds_too_many() {
        let mut kinds = [0usize; 3];
        let mut per_source: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for i in 0..Attack::SLOTS {
            kinds[attack_kind(i) as usize] += 1;
            *per_source.entry(attack_source(i)).or_default() += 1;
        }
        assert_eq!(kinds, [IDLE_PLAIN, IDLE_TLS, SLOWLORIS]);
        assert!(per_source.values().all(|&n| n <= PER_ADDRESS));
        assert!(!per_source.contains_key(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(attack_source(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        // Both idle kinds from the first address.
        assert_eq!(attack_kind(0), Kind::Plain);
        assert_eq!(attack_kind(1), Kind::Tls);
    }

    #[test]
    fn connection_metrics_are_read_for_the_sts_only() {
        let page = "latch_connections_open{service=\"sts\"} 4096\n\
            latch_connections_open{service=\"face\"} 3\n\
            latch_connections_closed_total{service=\"sts\",reason=\"shed\"} 12\n\
            latch_connections_closed_total{service=\"sts\",reason=\"idle\"} 0\n\
            latch_connections_closed_total{service=\"face\",reason=\"shed\"} 99\n";
        assert_eq!(
            metric(page, "latch_connections_open{service=\"sts\"}"),
            Some(4096)
        );
        assert_eq!(metric(page, "latch_nothing"), None);
        let closes = sts_closes(page);
        assert_eq!(closes.len(), 2);
        assert_eq!(closes["shed"], 12);
        assert_eq!(closes["idle"], 0);
    }

    #[test]
    fn the_slow_head_never_ends() {
        let head: Vec<u8> = (0..200).map(slow_byte).collect();
        let text = String::from_utf8(head).unwrap();
        assert!(text.starts_with("POST /sts/v1.0/issueLimitedAccessToken HTTP/1.1\r\n"));
        assert!(!text.contains("\r\n\r\n"));
        assert!(text.contains("\r\nX-Slow: a\r\nX-Slow: a\r\n"));
    }
}
