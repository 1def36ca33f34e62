//! The audit log for auditors: the README's workflow, tampering caught offline, and no record
//! lost to `kill -9`.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{jti, lat_body, Server};

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_auditor_finds_a_clients_tokens_in_a_time_range_and_proves_the_log_intact() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let work = s.dir.path().to_owned();
    let auditor = |args: &[&str]| {
        let mut all = vec!["--server", &s.admin_url, "--token", &s.auditor_token];
        all.extend_from_slice(args);
        s.cli(&all)
    };
    // Once: keep the audit key and a checkpoint.
    let key = ok(&auditor(&["--json", "audit", "key"]));
    std::fs::write(work.join("audit-key.json"), key.to_string()).unwrap();
    let saved = ok(&auditor(&["--json", "audit", "checkpoint"]));
    std::fs::write(work.join("saved.json"), saved.to_string()).unwrap();

    let from = latch_core::Clock::now(&latch_core::SystemClock);
    let mut issued = BTreeSet::new();
    for flags in [
        &["Face.Identification"][..],
        &["Face.Verification"],
        &["Face.Identification", "Face.Verification"],
    ] {
        let a = s
            .issue(
                Some(&d.isv_key),
                "?expiredTime=600",
                &lat_body(&d.client_id, flags),
            )
            .await;
        issued.insert(jti(&a.body));
    }
    let other = d.client_id.replace("demo-client-face", "someone-else");
    assert_eq!(
        s.issue(
            Some(&d.isv_key),
            "",
            &lat_body(&other, &["Face.Identification"])
        )
        .await
        .status,
        200
    );
    let to = latch_core::Clock::now(&latch_core::SystemClock).plus(1);

    // Every token issued for the client in the range, and nothing else.
    let page = ok(&auditor(&[
        "--json",
        "audit",
        "query",
        "--target",
        &d.client_id,
        "--type",
        "limited_access_token_issued",
        "--from",
        &from.0.to_string(),
        "--to",
        &to.0.to_string(),
    ]));
    let found: BTreeSet<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["jti"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(found, issued);
    assert_eq!(page["records"][0]["event"]["lifetime_secs"], 600);

    // The whole log, exported and verified offline against the saved checkpoint.
    let export = work.join("audit.jsonl");
    ok(&auditor(&[
        "audit",
        "export",
        "--out",
        export.to_str().unwrap(),
    ]));
    let verify = |file: &std::path::Path| {
        s.cli(&[
            "--json",
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--key-file",
            work.join("audit-key.json").to_str().unwrap(),
            "--checkpoint",
            work.join("saved.json").to_str().unwrap(),
        ])
    };
    let report = ok(&verify(&export));
    assert_eq!(report["verified"], true);

    // Without any export: the log extends the saved checkpoint, by a consistency proof.
    let prove = |saved: &std::path::Path, record: Option<u64>| {
        let record = record.map(|seq| seq.to_string());
        let key = work.join("audit-key.json");
        let mut args = vec![
            "--json",
            "audit",
            "prove",
            "--checkpoint",
            saved.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ];
        if let Some(seq) = &record {
            args.extend(["--record", seq]);
        }
        auditor(&args)
    };
    let proved = ok(&prove(&work.join("saved.json"), None));
    assert_eq!(proved["consistent"], true, "{proved}");
    assert!(proved["to"].as_u64() > proved["from"].as_u64());
    let mut forged = saved.clone();
    forged["root"] = Value::String(latch_core::jws::b64url([7u8; 32]));
    std::fs::write(work.join("forged.json"), forged.to_string()).unwrap();
    assert_eq!(
        prove(&work.join("forged.json"), None).status.code(),
        Some(6)
    );

    // ...and a record, as the log shows it now, is the one the saved checkpoint holds, by an
    // inclusion proof.
    let size = saved["size"].as_u64().unwrap();
    for seq in [1, size] {
        let included = ok(&prove(&work.join("saved.json"), Some(seq)));
        assert_eq!(included["included"], true, "{included}");
        assert_eq!(included["record"]["seq"], seq);
    }
    assert_eq!(
        prove(&work.join("forged.json"), Some(1)).status.code(),
        Some(6)
    );
    assert!(!prove(&work.join("saved.json"), Some(size + 1))
        .status
        .success());

    // Each start of the service is a record of its settings.
    let configured = ok(&auditor(&[
        "--json",
        "audit",
        "query",
        "--type",
        "service_configured",
    ]));
    assert_eq!(configured["records"][0]["event"]["settings"]["role"], "all");
    assert!(!configured.to_string().contains(&s.operator_token));

    // One byte flipped in a record: named, exit 6.
    let text = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let tampered = work.join("tampered.jsonl");
    let i = lines
        .iter()
        .position(|l| l.contains("limited_access_token_issued"))
        .unwrap();
    lines[i] = lines[i].replacen("\"lifetime_secs\":600", "\"lifetime_secs\":6000", 1);
    std::fs::write(&tampered, lines.join("\n")).unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(6));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("altered") || findings.contains("does not match them"),
        "{findings}"
    );

    // The tail cut off, checkpoints kept: named, exit 6.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let first_checkpoint = lines
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\""))
        .unwrap();
    lines.drain(first_checkpoint - 3..first_checkpoint);
    std::fs::write(&tampered, lines.join("\n")).unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stdout).contains("truncated"));
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_record_of_a_token_a_client_received() {
    let s = Server::process().await;
    let d = s.demo.clone();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = s.url.clone();
    let cacert = s.cacert.clone();
    let mut load = Vec::new();
    for _ in 0..8 {
        let (received, stop, url, cacert, key, body) = (
            received.clone(),
            stop.clone(),
            url.clone(),
            cacert.clone(),
            d.isv_key.clone(),
            lat_body(&d.client_id, &["Face.Identification"]),
        );
        load.push(tokio::spawn(async move {
            let http = crate::harness::Http::trusting(&url, cacert.as_deref());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let a = http
                    .try_request(
                        "POST",
                        "/sts/v1.0/issueLimitedAccessToken",
                        &[
                            ("Ocp-Apim-Subscription-Key", &key),
                            ("content-type", "application/json"),
                        ],
                        &body,
                    )
                    .await;
                match a {
                    Some(a) if a.status == 200 => received.lock().unwrap().push(a.body),
                    Some(_) => {}
                    None => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL while requests are in flight: no shutdown, no flush.
    let s = s.kill_and_restart().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
    let tokens = received.lock().unwrap().clone();
    assert!(
        tokens.len() > 20,
        "the load issued tokens: {}",
        tokens.len()
    );
    for t in &tokens {
        s.secret(t);
    }
    let recorded = s.issued_jtis().await;
    let lost: Vec<String> = tokens
        .iter()
        .map(|t| jti(t))
        .filter(|j| !recorded.contains(j))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} received tokens have no record",
        lost.len(),
        tokens.len()
    );
    eprintln!(
        "kill -9 under load: {} tokens received, every one recorded",
        tokens.len()
    );

    // After the restart the service issues again, and the whole chain verifies.
    assert_eq!(
        s.issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"])
        )
        .await
        .status,
        200
    );
    export_verifies(&s, "after-restart.jsonl");
    s.finish().await;
}

/// What a crash or an intruder can leave in the audit journal, over real processes: a write
/// cut short by `kill -9` is set aside at the next start and nothing acknowledged is lost; a
/// byte changed inside a record stops the service from starting, and the export, naming where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_tail_is_set_aside_and_an_edited_record_refuses_to_start() {
    if crate::database::embedded_only(
        "a_torn_journal_tail_is_set_aside_and_an_edited_record_refuses_to_start",
        "the journal's bytes",
    ) {
        return;
    }
    use latch_audit::journal::format::{
        BatchBuilder, BATCH_HEAD_BYTES, HEADER_BYTES, RECORD_HEAD_BYTES,
    };
    use std::os::unix::fs::FileExt;

    let s = Server::process().await;
    let d = s.demo.clone();
    let body = lat_body(&d.client_id, &["Face.Identification"]);
    let mut received = Vec::new();
    for _ in 0..5 {
        let a = s.issue(Some(&d.isv_key), "", &body).await;
        assert_eq!(a.status, 200);
        received.push(jti(&a.body));
    }
    let dir = s.kill_9();
    let journal = dir.path().join("data/journal/main");

    // The write in progress at the kill reached the disk in part: half a batch of two records
    // after the last one acknowledged.
    let (segment, end) = latch_audit::journal::end(&journal).unwrap();
    let mut batch = BatchBuilder::new(1_000);
    batch.push(br#"{"chain":"main","seq":1000,"prev_hash":"never acknowledged"}"#);
    batch.push(br#"{"chain":"main","seq":1001,"prev_hash":"never acknowledged"}"#);
    let bytes = batch.finish().to_vec();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .write_all_at(&bytes[..bytes.len() / 2], end)
        .unwrap();
    let s = Server::resume(dir).await;
    assert!(s.stderr().contains("torn write"), "{}", s.stderr());
    let recorded = s.issued_jtis().await;
    for j in &received {
        assert!(recorded.contains(j), "token {j} lost its record");
    }
    assert_eq!(s.issue(Some(&d.isv_key), "", &body).await.status, 200);
    export_verifies(&s, "export.jsonl");
    let rebuilt = ok(&s.cli(&["--json", "audit", "reindex"]));
    assert!(rebuilt["indexed"].as_u64().unwrap() > 6, "{rebuilt}");

    // A byte inside the first record, changed while the service is down.
    let dir = s.kill_9();
    let segment = journal_segment(&dir.path().join("data/journal/main"));
    let at = (HEADER_BYTES + BATCH_HEAD_BYTES + RECORD_HEAD_BYTES + 12) as u64;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], at).unwrap();
    drop(file);
    let (status, stderr) = Server::refused_start(dir.path());
    assert!(
        status.is_some_and(|s| !s.success()),
        "the service started: {stderr}"
    );
    assert!(stderr.contains("damaged"), "{stderr}");
    assert!(stderr.contains(&segment.display().to_string()), "{stderr}");
    assert!(stderr.contains("record 1"), "{stderr}");
    // The export will not read past it either.
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["audit", "export", "--out"])
        .arg(dir.path().join("after-edit.jsonl"))
        .env_remove("LATCH_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{out:?}"
    );
}

/// Exports the whole log to `name` in the server's folder and verifies it offline with the
/// audit key, as an auditor would.
fn export_verifies(s: &Server, name: &str) {
    let work = s.dir.path().to_owned();
    let key = ok(&s.cli(&["--json", "audit", "key"]));
    std::fs::write(work.join("k.json"), key.to_string()).unwrap();
    let export = work.join(name);
    ok(&s.cli(&["audit", "export", "--out", export.to_str().unwrap()]));
    let report = ok(&s.cli(&[
        "--json",
        "audit",
        "verify",
        export.to_str().unwrap(),
        "--key-file",
        work.join("k.json").to_str().unwrap(),
    ]));
    assert_eq!(report["verified"], true, "{report}");
}

/// The only segment of a journal.
fn journal_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let segments = latch_audit::journal::segments(dir).unwrap();
    assert_eq!(segments.len(), 1);
    segments[0].1.clone()
}

#[tokio::test]
async fn archived_records_leave_the_store_and_the_archive_plus_export_verify() {
    let s = Server::start().await;
    let d = s.demo.clone();
    for _ in 0..3 {
        assert_eq!(
            s.issue(
                Some(&d.isv_key),
                "",
                &lat_body(&d.client_id, &["Face.Identification"])
            )
            .await
            .status,
            200
        );
    }
    let work = s.dir.path().to_owned();
    std::fs::write(
        work.join("k.json"),
        ok(&s.cli(&["--json", "audit", "key"])).to_string(),
    )
    .unwrap();
    let before = s.audit().await.len();
    // Everything before the next second is "older than 0 days" once that second has come.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let archive = work.join("archive-1.jsonl");
    let out = ok(&s.cli(&[
        "--json",
        "audit",
        "archive",
        "--older-than-days",
        "0",
        "--out",
        archive.to_str().unwrap(),
    ]));
    assert_eq!(out["archived"].as_array().unwrap().len(), 1, "{out}");
    let left = s.audit().await.len();
    assert!(left < before, "records left the store: {before} -> {left}");
    assert_eq!(
        s.issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"])
        )
        .await
        .status,
        200
    );
    let export = work.join("export.jsonl");
    ok(&s.cli(&["audit", "export", "--out", export.to_str().unwrap()]));
    let key = work.join("k.json");
    let verify = |files: &[&std::path::Path]| {
        let mut args = vec!["--json", "audit", "verify"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        args.extend(["--key-file", key.to_str().unwrap()]);
        s.cli(&args)
    };
    assert_eq!(
        ok(&verify(&[&archive]))["verified"],
        true,
        "an archive verifies on its own"
    );
    assert_eq!(
        ok(&verify(&[&archive, &export]))["verified"],
        true,
        "archive and export verify together"
    );
    assert_eq!(
        verify(&[&export]).status.code(),
        Some(6),
        "the export alone lacks the archived records"
    );
    s.finish().await;
}
