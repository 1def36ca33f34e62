//! `latch audit export` on the local store and `latch audit verify`, which needs no store and
//! no server: an export and the audit public key are enough.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use latch_admin::Context;
use latch_core::checkpoint::{verify_export, Checkpoint};
use latch_core::signing::PublicKey;
use serde_json::{json, Value};

use crate::cli::Format;
use crate::exit;
use crate::output::{self, CliError};

/// Exit code of `audit verify` when the export does not verify.
pub(crate) const VERIFY_FAILED: u8 = 6;

/// Writes an export of the local store to `out`.
pub(crate) async fn export_local(
    ctx: &Context,
    chain: Option<&str>,
    format: &str,
    out: &Path,
) -> Result<(), CliError> {
    let file = std::fs::File::create(out).map_err(|e| {
        CliError::new(
            "Failed",
            format!("cannot create {}: {e}", out.display()),
            exit::FAILURE,
        )
    })?;
    let mut sink = FileSink {
        out: BufWriter::new(file),
        csv: format == "csv",
    };
    if sink.csv {
        writeln!(sink.out, "{}", latch_admin::csv::HEADER)
            .map_err(|e| CliError::new("Failed", e.to_string(), exit::FAILURE))?;
    }
    latch_audit::export::export(
        ctx.store.as_ref(),
        &ctx.audit,
        chain,
        ctx.rng.as_ref(),
        ctx.clock.as_ref(),
        &mut sink,
    )
    .await?;
    sink.out
        .flush()
        .map_err(|e| CliError::new("Failed", e.to_string(), exit::FAILURE))?;
    output::line(&format!("latch: export written to {}", out.display()));
    Ok(())
}

struct FileSink {
    out: BufWriter<std::fs::File>,
    csv: bool,
}

#[async_trait::async_trait]
impl latch_audit::export::LineSink for FileSink {
    async fn line(&mut self, line: String) -> std::io::Result<()> {
        if self.csv {
            if line.starts_with("{\"checkpoint\"") {
                return Ok(());
            }
            return writeln!(self.out, "{}", latch_admin::csv::row(&line));
        }
        writeln!(self.out, "{line}")
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }
}

/// Archives records older than `days` days of every chain (or one) to `out`.
pub(crate) async fn archive(
    ctx: &Context,
    only: Option<&str>,
    days: u32,
    out: &Path,
    format: Format,
) -> Result<(), CliError> {
    let before = ctx.clock.now().plus(-i64::from(days) * 86_400);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| {
            CliError::new(
                "Failed",
                format!("cannot create {}: {e}", out.display()),
                exit::FAILURE,
            )
        })?;
    let mut sink = FileSink {
        out: BufWriter::new(file),
        csv: false,
    };
    let chains: Vec<String> = match only {
        Some(c) => vec![c.to_owned()],
        None => ctx.store.audit_chains().await?,
    };
    let mut archived = Vec::new();
    for chain in chains {
        // The archive's lines are flushed to the file before its records leave the store.
        let cp = latch_audit::export::archive(
            ctx.store.as_ref(),
            &ctx.audit,
            &latch_audit::export::Archive {
                chain: &chain,
                before,
                actor: latch_core::audit::Actor::LocalOperator,
            },
            ctx.rng.as_ref(),
            ctx.clock.as_ref(),
            &mut sink,
        )
        .await?;
        if let Some(cp) = cp {
            archived.push(json!({ "chain": chain, "throughSeq": cp.size }));
        }
    }
    let value = json!({ "archived": archived, "file": out.display().to_string(), "before": before.to_rfc3339() });
    output::print(format, &value, || {
        if archived.is_empty() {
            format!("nothing older than {} to archive", before.to_rfc3339())
        } else {
            let what: Vec<String> = archived
                .iter()
                .map(|a| format!("{} through record {}", a["chain"], a["throughSeq"]))
                .collect();
            format!(
                "archived to {}: {}\nkeep it: verify later exports together with it (latch audit verify {} <export> ...)",
                out.display(),
                what.join(", "),
                out.display()
            )
        }
    });
    Ok(())
}

/// `latch audit reindex`: the index, rebuilt from the journal.
pub(crate) async fn reindex(ctx: &Context, format: Format) -> Result<(), CliError> {
    let records = ctx.store.reindex_audit().await?;
    output::print(format, &json!({ "indexed": records }), || {
        format!("the audit index was rebuilt from the journal: {records} records")
    });
    Ok(())
}

/// `latch audit new-key`: a fresh audit signing key in a new owner-only file; prints its
/// public half (the JWK auditors verify with).
pub(crate) fn new_key(out: &Path, format: Format) -> Result<(), CliError> {
    let rng = ring::rand::SystemRandom::new();
    let key = latch_core::SigningKey::generate(&rng)
        .map_err(|e| CliError::new("Failed", e.to_string(), crate::exit::FAILURE))?;
    latch_audit::signer::write_private(out, key.pkcs8(), true).map_err(|e| {
        let exit = if e.kind() == std::io::ErrorKind::AlreadyExists {
            crate::exit::ALREADY_EXISTS
        } else {
            crate::exit::FAILURE
        };
        CliError::new(
            "Failed",
            format!("cannot write {}: {e}", out.display()),
            exit,
        )
    })?;
    let jwk = serde_json::to_value(key.public_key().to_jwk())
        .map_err(|e| CliError::new("Failed", e.to_string(), crate::exit::FAILURE))?;
    crate::output::print(format, &jwk, || {
        format!(
            "latch: audit key written to {} (owner-only); its public key, for `audit verify --key-file`:\n{jwk}",
            out.display()
        )
    });
    Ok(())
}

/// Verifies `files` (archives, oldest first, then an export) offline; prints every finding,
/// or that they verify.
pub(crate) fn verify(
    files: &[std::path::PathBuf],
    key_files: &[std::path::PathBuf],
    saved: Option<&Path>,
    format: Format,
) -> Result<(), CliError> {
    let keys = read_keys(key_files)?;
    let saved = saved.map(read_checkpoint).transpose()?;
    let mut readers = Vec::new();
    for file in files {
        readers.push(BufReader::new(
            std::fs::File::open(file).map_err(|e| unreadable("cannot open", file, &e))?,
        ));
    }
    // Lines as bytes: a line that is not UTF-8 is read (and reported), not the end of input.
    let lines = readers.into_iter().flat_map(|r| {
        r.split(b'\n')
            .map_while(Result::ok)
            .map(|bytes| String::from_utf8(bytes).unwrap_or_else(|_| "\u{fffd}".to_owned()))
    });
    let report = verify_export(lines, &keys, saved.as_ref(), |n| {
        eprintln!("latch: {n} lines checked")
    });
    let records: u64 = report.records.values().sum();
    let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    let note = saved.is_none().then_some(
        "no saved checkpoint given (--checkpoint): a cut tail or a replayed old checkpoint cannot be told from a smaller genuine log",
    );
    let value = json!({
        "verified": findings.is_empty(),
        "note": note,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "findings": findings,
    });
    output::print(format, &value, || {
        verify_text(
            &findings,
            records,
            report.records.len(),
            report.checkpoints,
            note,
        )
    });
    if findings.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            "VerificationFailed",
            format!("{} finding(s)", findings.len()),
            VERIFY_FAILED,
        ))
    }
}

/// A file that cannot be read, or is not what it should be.
fn unreadable(what: &str, p: &Path, e: &dyn std::fmt::Display) -> CliError {
    CliError::usage(format!("{what} {}: {e}", p.display()))
}

/// The pinned audit keys (JWK files).
fn read_keys(key_files: &[std::path::PathBuf]) -> Result<Vec<PublicKey>, CliError> {
    let mut keys = Vec::new();
    for key in key_files {
        let jwk: Value = std::fs::read_to_string(key)
            .map_err(|e| unreadable("cannot read", key, &e))
            .and_then(|t| {
                serde_json::from_str(&t).map_err(|e| unreadable("not a JWK:", key, &e))
            })?;
        keys.push(
            PublicKey::from_jwk(&jwk)
                .ok_or_else(|| CliError::usage(format!("{} is not a P-256 JWK", key.display())))?,
        );
    }
    Ok(keys)
}

/// A saved checkpoint (`--checkpoint`).
fn read_checkpoint(p: &Path) -> Result<Checkpoint, CliError> {
    std::fs::read_to_string(p)
        .map_err(|e| unreadable("cannot read", p, &e))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| unreadable("not a checkpoint:", p, &e)))
}

/// What `audit verify` says to people: that the files verify, or every finding.
fn verify_text(
    findings: &[String],
    records: u64,
    chains: usize,
    checkpoints: u64,
    note: Option<&str>,
) -> String {
    if findings.is_empty() {
        let mut text = format!(
            "the export verifies: {records} records in {chains} chain(s), {checkpoints} signed checkpoint(s), the last covering every record"
        );
        if let Some(note) = note {
            text.push_str(&format!("\nnote: {note}"));
        }
        text
    } else {
        let mut text = format!(
            "the export does NOT verify ({} finding(s)):",
            findings.len()
        );
        for f in findings {
            text.push_str(&format!("\n  - {f}"));
        }
        text
    }
}

/// A saved checkpoint and the pinned audit key, from their files.
pub(crate) fn read_saved(
    checkpoint: &Path,
    key: &Path,
) -> Result<(Checkpoint, PublicKey), CliError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", p.display())))
    };
    let jwk: Value = serde_json::from_str(&read(key)?)
        .map_err(|e| CliError::usage(format!("{}: {e}", key.display())))?;
    let key = PublicKey::from_jwk(&jwk)
        .ok_or_else(|| CliError::usage("the key file is not a P-256 JWK"))?;
    let saved: Checkpoint = serde_json::from_str(&read(checkpoint)?)
        .map_err(|e| CliError::usage(format!("{}: {e}", checkpoint.display())))?;
    Ok((saved, key))
}

/// A hash as the service serves it (base64url).
fn hash(v: &Value) -> Option<latch_core::merkle::Hash> {
    latch_core::jws::b64url_decode(v.as_str()?)
        .ok()?
        .try_into()
        .ok()
}

/// The hashes of a served proof, if every one is a hash.
fn proof_hashes(answer: &Value) -> Option<Vec<latch_core::merkle::Hash>> {
    answer["proof"]
        .as_array()
        .and_then(|a| a.iter().map(hash).collect())
}

/// Prints a proof's verdict (`value`, or for people `held` / `failed` and the problems) and
/// fails with exit 6 and `what` when there are problems.
fn verdict(
    format: Format,
    value: &Value,
    problems: &[&str],
    held: String,
    failed: String,
    what: &str,
) -> Result<(), CliError> {
    output::print(format, value, || {
        if problems.is_empty() {
            held
        } else {
            format!("{failed}:\n  - {}", problems.join("\n  - "))
        }
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::new("VerificationFailed", what, VERIFY_FAILED))
    }
}

/// Checks that `fresh` extends `saved` by the served consistency proof; both checkpoints must
/// be signed by the pinned key.
pub(crate) fn prove(
    saved: &Checkpoint,
    fresh: &Checkpoint,
    answer: &Value,
    key: &PublicKey,
    format: Format,
) -> Result<(), CliError> {
    let proof = proof_hashes(answer);
    let problems: Vec<&str> = [
        (
            !saved.verify(key),
            "your saved checkpoint is not signed by the audit key",
        ),
        (
            !fresh.verify(key),
            "the current checkpoint is not signed by the audit key",
        ),
        (
            fresh.size < saved.size || (fresh.size == saved.size && fresh.time < saved.time),
            "the current checkpoint is older than yours: a replayed checkpoint",
        ),
        (
            hash(&answer["firstRoot"]) != saved.root_hash(),
            "the log's root at your checkpoint's size differs from yours: rewritten",
        ),
        (
            hash(&answer["secondRoot"]) != fresh.root_hash(),
            "the proof is not for the current checkpoint",
        ),
        (
            !proof
                .as_ref()
                .is_some_and(|p| match (saved.root_hash(), fresh.root_hash()) {
                    (Some(a), Some(b)) => {
                        latch_core::merkle::verify_consistency(saved.size, fresh.size, &a, &b, p)
                    }
                    _ => false,
                }),
            "the consistency proof does not verify: the log does not extend your checkpoint",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, why)| bad.then_some(why))
    .collect();
    let value = json!({ "consistent": problems.is_empty(), "from": saved.size, "to": fresh.size, "problems": problems });
    verdict(
        format,
        &value,
        &problems,
        format!(
            "the log extends your checkpoint: {} records then, {} now, every earlier record unchanged (RFC 9162 consistency proof)",
            saved.size, fresh.size
        ),
        "the log does NOT extend your checkpoint".into(),
        "not consistent",
    )
}

/// Checks that the record served as `seq` is in the tree `saved` signed, by the served
/// inclusion proof; the checkpoint must be signed by the pinned key.
pub(crate) fn prove_included(
    saved: &Checkpoint,
    seq: u64,
    answer: &Value,
    key: &PublicKey,
    format: Format,
) -> Result<(), CliError> {
    let record = answer["record"].as_str().unwrap_or_default();
    let leaf = latch_core::merkle::leaf_hash(record.as_bytes());
    let proof = proof_hashes(answer);
    let sealed: Option<latch_core::audit::SealedRecord> = serde_json::from_str(record).ok();
    let problems: Vec<&str> = [
        (
            !saved.verify(key),
            "your saved checkpoint is not signed by the audit key",
        ),
        (
            seq == 0 || seq > saved.size,
            "your checkpoint does not cover that record",
        ),
        (
            !sealed
                .as_ref()
                .is_some_and(|r| r.seq == seq && r.chain == saved.chain),
            "the record served is not that record of your checkpoint's chain",
        ),
        (
            hash(&answer["root"]) != saved.root_hash(),
            "the log's root at your checkpoint's size differs from yours: rewritten",
        ),
        (
            !proof
                .as_ref()
                .is_some_and(|p| match (saved.root_hash(), seq.checked_sub(1)) {
                    (Some(root), Some(index)) => {
                        latch_core::merkle::verify_inclusion(index, saved.size, &leaf, &root, p)
                    }
                    _ => false,
                }),
            "the inclusion proof does not verify: the record is not as your checkpoint holds it",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, why)| bad.then_some(why))
    .collect();
    let value = json!({
        "included": problems.is_empty(),
        "seq": seq,
        "size": saved.size,
        "record": sealed,
        "problems": problems,
    });
    verdict(
        format,
        &value,
        &problems,
        format!(
            "record {seq} is in your checkpoint of {} records, exactly as shown (RFC 9162 inclusion proof):\n{record}",
            saved.size
        ),
        format!("record {seq} is NOT shown as your checkpoint holds it"),
        "not included",
    )
}

/// One record as a line for people.
pub(crate) fn record_line(r: &Value) -> String {
    let e = &r["event"];
    let time = r["time"]
        .as_i64()
        .map(|t| latch_core::UnixTime(t).to_rfc3339())
        .unwrap_or_default();
    let mut line = format!(
        "{time}  {}#{}  {}",
        r["chain"].as_str().unwrap_or_default(),
        r["seq"],
        e["type"].as_str().unwrap_or_default()
    );
    for k in [
        "outcome",
        "reason",
        "operation",
        "isv",
        "target",
        "resource",
        "client",
        "jti",
    ] {
        if let Some(v) = e[k].as_str() {
            line.push_str(&format!("  {k}={v}"));
        }
    }
    if let Some(f) = e["features"].as_array() {
        let names: Vec<&str> = f.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!("  features={}", names.join(",")));
    }
    if let Some(secs) = e["lifetime_secs"].as_u64() {
        line.push_str(&format!("  lifetime={secs}s"));
    }
    line
}
