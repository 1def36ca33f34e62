//! `latch-bench [--duration SECS] [--connections 32,64] [--scenarios a,b] [--prefill RECORDS] [--out FILE] [--latch PATH]`
//!
//! Starts `latch serve` (the release binary beside this one) as a real process on loopback,
//! drives it over keep-alive HTTPS connections, and reports per scenario: requests per second,
//! p50 and p99 latency, the server's CPU time per request (from `/proc`), and errors. The
//! ceilings are measured in the same run, since only ratios within one run mean anything on a
//! shared machine:
//!
//! * `http`: the same server, TLS and HTTP stack answering a route without authentication,
//!   signing or audit (`GET /health/live`);
//! * raw ES256 signing and verification per core, and the audit log's durable commit rate and
//!   CPU per record.
//!
//! Issuance is compared with "HTTP + one ES256 signature", the Face front with a reused token
//! (warm) with `http`, and with a new token every request (cold) with "HTTP + one ES256
//! verification": the ceiling's throughput is `http`'s, scaled by the server CPU the
//! cryptography adds to `http`'s per request. Each of the three also has a floor ("vs floor"):
//! its ceiling with the CPU of one durable audit record added, which every issuance and every
//! token-bearing call writes before it is answered.
//!
//! `engine`: the built-in Face engine on a second server (see [`engine`]).
//!
//! `hostile`: issuance on a third server while its STS is attacked with idle and slow
//! connections, and an anonymous flood's audit records (see [`hostile`]).
//!
//! `sustained` (only when named; it fills a log of `--prefill` records, 10 M by default, for
//! minutes): issuance against the full log beside an empty one, and what the full log costs
//! start-up, a query, a checkpoint, the disk, export and verify (see [`sustained`]).

#![allow(clippy::print_stdout)]

mod ceilings;
mod engine;
mod hostile;
mod load;
mod server;
mod sustained;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use latch_core::claims::{new_jti, LimitedAccessClaims, LimitedAccessGrant, TokenKind};
use latch_core::{Clock, FeatureSet, Lifetime, ResourceId, SystemClock};
use serde_json::json;

use crate::load::{Outcome, Scenario};
use crate::server::Server;

struct Args {
    duration: Duration,
    connections: Vec<usize>,
    out: PathBuf,
    latch: PathBuf,
    /// The scenarios to run besides `http` (which always runs: it is the baseline); all but
    /// `sustained` (minutes of filling a log) when empty.
    only: Vec<String>,
    /// Records in the log `sustained` fills.
    prefill: u64,
}

/// The scenarios, by the names `--scenarios` takes.
const SCENARIOS: [&str; 8] = [
    "http",
    "issuance",
    "face-key",
    "face-warm",
    "face-cold",
    "engine",
    "hostile",
    "sustained",
];

fn args() -> Result<Args, String> {
    let beside = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("latch");
    let mut args = Args {
        duration: Duration::from_secs(3),
        connections: vec![32, 64],
        out: PathBuf::from("target/bench.json"),
        latch: beside,
        only: Vec::new(),
        prefill: 10_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--duration" => {
                args.duration = Duration::from_secs_f64(
                    value.parse().map_err(|_| format!("--duration {value}"))?,
                );
            }
            "--connections" => {
                args.connections = value
                    .split(',')
                    .map(|n| n.parse().map_err(|_| format!("--connections {value}")))
                    .collect::<Result<_, _>>()?;
            }
            "--scenarios" => {
                args.only = value.split(',').map(str::to_owned).collect();
                if let Some(bad) = args.only.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
                    return Err(format!(
                        "--scenarios: no scenario {bad}; there are {}",
                        SCENARIOS.join(", ")
                    ));
                }
            }
            "--prefill" => {
                args.prefill = value.parse().map_err(|_| format!("--prefill {value}"))?;
            }
            "--out" => args.out = PathBuf::from(value),
            "--latch" => args.latch = PathBuf::from(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("latch-bench: {e}\nusage: latch-bench [--duration SECS] [--connections 32,64] [--scenarios http,issuance,face-key,face-warm,face-cold,engine,hostile,sustained] [--prefill RECORDS] [--out FILE] [--latch PATH]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latch-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latch-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = Server::start(&args.latch, None)?;
    let (idle_rss, _) = server.memory();
    println!(
        "latch-bench: latch serve ready in {} ms, {:.1} MB resident idle; {cores} cores; {} s per run",
        server.startup.as_millis(),
        idle_rss as f64 / 1e6,
        args.duration.as_secs_f64()
    );
    let ceilings = Ceilings::measure(cores).await?;
    let fronts = Fronts::new(&server).await?;
    let results = run_fronts(&server, &fronts, &ceilings, &args).await?;
    let (engine, hostile, sustained) = other_scenarios(&args, cores).await?;
    let (rss, peak) = server.memory();
    println!(
        "\nmemory: {:.1} MB resident now, {:.1} MB at peak",
        rss as f64 / 1e6,
        peak as f64 / 1e6
    );
    let Ceilings {
        sign,
        verify,
        floor,
        floor64,
    } = ceilings;
    let report = json!({
        "cores": cores,
        "durationSecs": args.duration.as_secs_f64(),
        "startupMs": server.startup.as_millis() as u64,
        "idleRssBytes": idle_rss,
        "peakRssBytes": peak,
        "es256SignMicrosPerCore": sign * 1e6,
        "es256VerifyMicrosPerCore": verify * 1e6,
        "auditRecordsPerSecond": floor.per_second,
        "auditCpuMicrosPerRecord": floor.cpu_per_record * 1e6,
        "auditRecordsPerCommit": floor.per_commit,
        "auditCpuMicrosPerRecordIndexed": floor.cpu_per_record_indexed * 1e6,
        "audit64CpuMicrosPerRecord": floor64.cpu_per_record * 1e6,
        "audit64CpuMicrosPerRecordIndexed": floor64.cpu_per_record_indexed * 1e6,
        "audit64RecordsPerCommit": floor64.per_commit,
        "scenarios": results,
        "engine": engine,
        "hostile": hostile,
        "sustained": sustained,
    });
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&args.out, format!("{report:#}\n"))
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// What the front scenarios are compared with, measured in this process: ES256 signing and
/// verification per core, and the audit log's durable commits at 32 and 64 callers.
struct Ceilings {
    sign: f64,
    verify: f64,
    floor: ceilings::AuditFloor,
    floor64: ceilings::AuditFloor,
}

impl Ceilings {
    /// Measures the ceilings, and prints them.
    async fn measure(cores: usize) -> Result<Ceilings, String> {
        let (sign, verify) = ceilings::es256(cores, Duration::from_secs(1))?;
        let floor = ceilings::audit_commits(32, Duration::from_secs(1)).await?;
        let floor64 = ceilings::audit_commits(64, Duration::from_secs(1)).await?;
        println!(
            "ceilings: ES256 sign {:.1} µs, verify {:.1} µs per core",
            sign * 1e6,
            verify * 1e6,
        );
        for (callers, f) in [(32, &floor), (64, &floor64)] {
            println!(
                "audit log, {callers} callers: {:.0} durable usage records/s, {:.1} µs CPU each until durable ({:.1} with the index built behind it), {:.1} per commit",
                f.per_second,
                f.cpu_per_record * 1e6,
                f.cpu_per_record_indexed * 1e6,
                f.per_commit,
            );
        }
        Ok(Ceilings {
            sign,
            verify,
            floor,
            floor64,
        })
    }

    /// The ceiling of scenario `name`: the bare route's throughput (`http`: its rate and CPU
    /// per request), scaled by what the unavoidable cryptography adds to its server CPU per
    /// request; and what the ceiling is.
    fn ceiling(&self, name: &str, rps: f64, http: Option<(f64, f64)>) -> (f64, &'static str) {
        let (sign, verify) = (self.sign, self.verify);
        match (name, http) {
            ("http", _) => (rps, "itself"),
            ("issuance", Some((r, c))) => (r * c / (c + sign), "HTTP + ES256 sign"),
            ("face warm" | "face key", Some((r, _))) => (r, "HTTP"),
            ("face cold", Some((r, c))) => (r * c / (c + verify), "HTTP + ES256 verify"),
            _ => (rps, "none"),
        }
    }

    /// The floor: the same ceiling with one durable audit record added, as every issuance and
    /// every token-bearing call writes one.
    fn floor(&self, name: &str, http: Option<(f64, f64)>) -> Option<f64> {
        let (sign, verify, audit) = (self.sign, self.verify, self.floor.cpu_per_record);
        match (name, http) {
            ("issuance", Some((r, c))) => Some(r * c / (c + sign + audit)),
            ("face warm", Some((r, c))) => Some(r * c / (c + audit)),
            ("face cold", Some((r, c))) => Some(r * c / (c + verify + audit)),
            _ => None,
        }
    }
}

/// What the scenarios on the STS and Face fronts call with: the listeners, the TLS trust, the
/// demo keys and the tokens.
struct Fronts {
    tls: Arc<rustls::ClientConfig>,
    sts: SocketAddr,
    face: SocketAddr,
    isv_key: String,
    client_key: String,
    client: String,
    identify_body: String,
    cold_tokens: Arc<Vec<String>>,
    warm_token: Arc<Vec<String>>,
}

impl Fronts {
    /// Reads the server's addresses and demo keys, and mints the tokens.
    async fn new(server: &Server) -> Result<Fronts, String> {
        let tls = Arc::new(trust(&server.data_dir().join("tls").join("dev-cert.pem"))?);
        let sts: SocketAddr = addr(&server.sts)?;
        let face: SocketAddr = addr(&server.face)?;
        let isv_key = server.demo("ISV_KEY")?;
        let client_key = server.demo("CLIENT_KEY")?;
        let client = server.demo("CLIENT_RESOURCE_ID")?;
        let isv = server.demo("ISV_RESOURCE_ID")?;
        let identify_body =
            json!({"faceIds": ["c5c24a82-6845-4031-9d5d-978df9175426"], "largePersonGroupId": "g"})
                .to_string();
        let cold_tokens = Arc::new(mint(server, &isv, &client, 60_000).await?);
        let warm_token = Arc::new(vec![cold_tokens[0].clone()]);
        Ok(Fronts {
            tls,
            sts,
            face,
            isv_key,
            client_key,
            client,
            identify_body,
            cold_tokens,
            warm_token,
        })
    }

    /// The front scenarios, each with the listener it goes to.
    fn scenarios(&self) -> Vec<(SocketAddr, Scenario)> {
        let (sts, face) = (self.sts, self.face);
        let (client_key, identify_body) = (&self.client_key, &self.identify_body);
        vec![
            (
                sts,
                Scenario {
                    name: "http",
                    method: "GET",
                    path: "/health/live",
                    headers: vec![],
                    body: Bytes::new(),
                    tokens: Arc::new(vec![]),
                    expect: 200,
                },
            ),
            (sts, issuance(&self.isv_key, &self.client)),
            (
                face,
                Scenario {
                    // A call that needs no feature: the key check, the rate limit and the
                    // route, no token and no usage record. Not a target; it tells the front's
                    // own cost from the token's and the audit record's.
                    name: "face key",
                    method: "GET",
                    path: "/face/v1.0/largepersongroups",
                    headers: vec![("Ocp-Apim-Subscription-Key", client_key.clone())],
                    body: Bytes::new(),
                    tokens: Arc::new(vec![]),
                    expect: 501,
                },
            ),
            (
                face,
                Scenario {
                    name: "face warm",
                    method: "POST",
                    path: "/face/v1.0/identify",
                    headers: vec![
                        ("Ocp-Apim-Subscription-Key", client_key.clone()),
                        ("content-type", "application/json".into()),
                    ],
                    body: Bytes::from(identify_body.clone()),
                    tokens: self.warm_token.clone(),
                    // Every check passed; no Face backend is configured.
                    expect: 501,
                },
            ),
            (
                face,
                Scenario {
                    name: "face cold",
                    method: "POST",
                    path: "/face/v1.0/identify",
                    headers: vec![
                        ("Ocp-Apim-Subscription-Key", client_key.clone()),
                        ("content-type", "application/json".into()),
                    ],
                    body: Bytes::from(identify_body.clone()),
                    tokens: self.cold_tokens.clone(),
                    expect: 501,
                },
            ),
        ]
    }
}

/// Runs the front scenarios (those asked for, and `http` always) at each connection count;
/// their rows.
async fn run_fronts(
    server: &Server,
    fronts: &Fronts,
    ceilings: &Ceilings,
    args: &Args,
) -> Result<Vec<serde_json::Value>, String> {
    let mut results = Vec::new();
    for &connections in &args.connections {
        println!("\n{connections} connections:");
        println!(
            "  {:<10} {:>9} {:>9} {:>9} {:>12} {:>7} {:>8} {:>9}  vs ceiling",
            "scenario",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "errors",
            "rec/commit",
            "vs floor"
        );
        let mut http: Option<(f64, f64)> = None;
        for (target, scenario) in fronts.scenarios() {
            let name = scenario.name;
            let flag = name.replace(' ', "-");
            if name != "http" && !args.only.is_empty() && !args.only.contains(&flag) {
                continue;
            }
            let run =
                FrontRun::measure(server, target, &fronts.tls, scenario, connections, args).await?;
            results.push(run.report(name, connections, ceilings, &mut http));
        }
    }
    Ok(results)
}

/// One run of a front scenario: its outcome, the server's CPU per request, and the audit
/// records and durable commits it caused.
struct FrontRun {
    outcome: Outcome,
    cpu: f64,
    records: u64,
    commits: u64,
}

impl FrontRun {
    async fn measure(
        server: &Server,
        target: SocketAddr,
        tls: &Arc<rustls::ClientConfig>,
        scenario: Scenario,
        connections: usize,
        args: &Args,
    ) -> Result<FrontRun, String> {
        let before = server.cpu();
        let audit_before = server.audit_counts()?;
        let outcome: Outcome = load::run(
            target,
            tls.clone(),
            Arc::new(scenario),
            connections,
            args.duration,
        )
        .await?;
        let cpu = (server.cpu() - before).as_secs_f64() / outcome.requests.max(1) as f64;
        let audit_after = server.audit_counts()?;
        Ok(FrontRun {
            outcome,
            cpu,
            records: audit_after.0.saturating_sub(audit_before.0),
            commits: audit_after.1.saturating_sub(audit_before.1),
        })
    }

    /// Prints the run against its ceiling and floor (`http` is set by the `http` run, which
    /// comes first); its row.
    fn report(
        &self,
        name: &'static str,
        connections: usize,
        ceilings: &Ceilings,
        http: &mut Option<(f64, f64)>,
    ) -> serde_json::Value {
        let (outcome, cpu, records, commits) =
            (&self.outcome, self.cpu, self.records, self.commits);
        // How many records each durable commit carried: group commit at work.
        let per_commit = (commits > 0).then(|| records as f64 / commits as f64);
        let rps = outcome.per_second();
        if name == "http" {
            *http = Some((rps, cpu));
        }
        let (ceiling, ceiling_name) = ceilings.ceiling(name, rps, *http);
        let ratio = rps / ceiling;
        let floor_rps = ceilings.floor(name, *http);
        println!(
            "  {:<10} {:>9.0} {:>9.2} {:>9.2} {:>12.1} {:>7} {:>8} {:>9}  {:>5.1} % of {ceiling_name} ({ceiling:.0} req/s)",
            name,
            rps,
            outcome.quantile_ms(0.5),
            outcome.quantile_ms(0.99),
            cpu * 1e6,
            outcome.errors,
            per_commit.map_or("-".to_owned(), |n| format!("{n:.1}")),
            floor_rps.map_or("-".to_owned(), |f| format!("{:.1} %", rps / f * 100.0)),
            ratio * 100.0
        );
        let mut row = outcome.row(connections, name, cpu, ceiling_name, ceiling);
        row["floorRequestsPerSecond"] = json!(floor_rps);
        row["floorRatio"] = json!(floor_rps.map(|f| rps / f));
        row["auditRecords"] = json!(records);
        row["auditCommits"] = json!(commits);
        row
    }
}

/// The scenarios on servers of their own: `engine` and `hostile` (unless others are named)
/// and `sustained` (only when named).
async fn other_scenarios(
    args: &Args,
    cores: usize,
) -> Result<(Vec<serde_json::Value>, serde_json::Value, serde_json::Value), String> {
    let engine = if args.only.is_empty() || args.only.iter().any(|s| s == "engine") {
        engine::bench(&args.latch, &args.connections, args.duration, cores).await?
    } else {
        Vec::new()
    };
    let hostile = if args.only.is_empty() || args.only.iter().any(|s| s == "hostile") {
        hostile::bench(&args.latch, &args.connections, args.duration).await?
    } else {
        serde_json::Value::Null
    };
    let sustained = if args.only.iter().any(|s| s == "sustained") {
        sustained::bench(&args.latch, args.prefill, &args.connections, args.duration).await?
    } else {
        serde_json::Value::Null
    };
    Ok((engine, hostile, sustained))
}

/// The `issuance` scenario: the demo ISV issues a limited access token for the demo client.
fn issuance(isv_key: &str, client: &str) -> Scenario {
    let body = json!({"targetAzureResourceId": client, "featureFlags": ["Face.Identification"]});
    Scenario {
        name: "issuance",
        method: "POST",
        path: "/sts/v1.0/issueLimitedAccessToken",
        headers: vec![
            ("Ocp-Apim-Subscription-Key", isv_key.to_owned()),
            ("content-type", "application/json".into()),
        ],
        body: Bytes::from(body.to_string()),
        tokens: Arc::new(vec![]),
        expect: 200,
    }
}

fn addr(url: &str) -> Result<SocketAddr, String> {
    url.trim_start_matches("https://")
        .parse()
        .map_err(|_| format!("not an https://address:port URL: {url}"))
}

/// A TLS client trusting only the server's development certificate.
fn trust(cacert: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let roots = latch_tls::roots::roots_from_pem_file(cacert).map_err(|e| e.to_string())?;
    latch_tls::roots::client_config_with(roots).map_err(|e| e.to_string())
}

/// `n` distinct limited access tokens for the demo client, signed with the server's own
/// signing key (read from its store), so the cold scenario verifies a new one every request.
async fn mint(server: &Server, isv: &str, client: &str, n: usize) -> Result<Vec<String>, String> {
    let rng = ring::rand::SystemRandom::new();
    let store = latch_store::sqlite::SqliteStore::open(&server.data_dir(), "bench", &rng)
        .map_err(|e| e.to_string())?;
    let now = SystemClock.now();
    let ring_ = latch_store::signing::KeyRing::load(&store, &rng, now)
        .await
        .map_err(|e| e.to_string())?;
    let isv = ResourceId::parse(isv).map_err(|e| e.to_string())?;
    let client = ResourceId::parse(client).map_err(|e| e.to_string())?;
    let features = FeatureSet::parse_csv("Face.Identification").map_err(|e| e.to_string())?;
    let grant = LimitedAccessGrant {
        issuer: "urn:latch:sts",
        isv: &isv,
        target: &client,
        features: &features,
        lifetime: Lifetime::DEFAULT,
        region: None,
    };
    (0..n)
        .map(|_| {
            let jti = new_jti(&rng).map_err(|e| e.to_string())?;
            ring_
                .active()
                .sign(
                    TokenKind::LimitedAccess,
                    &LimitedAccessClaims::new(&grant, now, jti),
                    &rng,
                )
                .map_err(|e| e.to_string())
        })
        .collect()
}
