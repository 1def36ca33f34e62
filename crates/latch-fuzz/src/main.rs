//! `latch-fuzz [resource-id|token|all] [--iterations N] [--seed S] [--max-len L]`
//!
//! Exits 0 when no property broke; otherwise writes the input to `fuzz-crash-<target>.bin`,
//! prints the panic message, and exits 1.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use latch_fuzz::{run, Target};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut targets = vec![Target::ResourceId, Target::Token];
    let (mut iterations, mut seed, mut max_len) = (200_000u64, 1u64, 8192usize);
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("resource-id", _) => targets = vec![Target::ResourceId],
            ("token", _) => targets = vec![Target::Token],
            ("all", _) => {}
            ("--iterations", Some(v)) => (iterations, i) = (v, i + 1),
            ("--seed", Some(v)) => (seed, i) = (v, i + 1),
            ("--max-len", Some(v)) => (max_len, i) = (v as usize, i + 1),
            (other, _) => {
                eprintln!("latch-fuzz: unexpected '{other}'\nusage: latch-fuzz [resource-id|token|all] [--iterations N] [--seed S] [--max-len L]");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    // Panics are expected to be caught and reported; keep their default messages quiet.
    std::panic::set_hook(Box::new(|_| {}));
    for target in targets {
        match run(target, iterations, seed, max_len) {
            Ok(report) => println!(
                "{target:?}: {} inputs, {} distinct outcomes, corpus {}: no property broken",
                report.iterations,
                report.outcomes.len(),
                report.corpus
            ),
            Err(crash) => {
                let file = format!("fuzz-crash-{target:?}.bin").to_lowercase();
                let _ = std::fs::write(&file, &crash.input);
                eprintln!(
                    "{target:?}: property broken: {}\ninput written to {file}",
                    crash.message
                );
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
