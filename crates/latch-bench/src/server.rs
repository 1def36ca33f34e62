//! The server under test: `latch serve` as a real process in a temporary data directory, and
//! what the kernel says about it (CPU time, resident memory).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The configuration of [`Server::start`]: the Face front's and the STS's rate limits lifted,
/// since all the load comes from one key on one address; the connection bounds (`[server]`)
/// at their defaults.
const RATE_LIMITS_LIFTED: &str = "\
[face]
rate_limit_per_second = 1000000000
rate_limit_burst = 1000000000
[sts]
rate_limit_per_second = 1000000000
rate_limit_burst = 1000000000
address_rate_limit_per_second = 1000000000
address_rate_limit_burst = 1000000000
";

/// A running `latch serve`.
pub(crate) struct Server {
    child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) sts: String,
    pub(crate) face: String,
    /// The metrics listener's address (plain HTTP).
    metrics: String,
    /// Where its standard error goes.
    stderr: PathBuf,
    /// Stopped by [`Server::stop`] (and reaped): nothing left to signal.
    stopped: bool,
    /// From spawning the process to its `latch: ready` line.
    pub(crate) startup: Duration,
    ticks_per_second: f64,
}

impl Server {
    /// Starts `binary serve` on loopback ports with the demo bootstrap and its development
    /// certificate, every other setting at its default but the rate limits of the Face front
    /// and the STS (lifted: the load comes from one key on one address). Its standard error
    /// (its log) goes to a file in its temporary directory.
    /// With `engine`, the built-in Face engine runs, its weights in that directory; without,
    /// allowed Face calls are answered 501.
    pub(crate) fn start(binary: &Path, engine: Option<&Path>) -> Result<Server, String> {
        Self::start_in(
            tempfile::tempdir().map_err(|e| e.to_string())?,
            binary,
            engine,
        )
    }

    /// Like [`Server::start`], in `dir`, whose `data` may hold a store already.
    pub(crate) fn start_in(
        dir: tempfile::TempDir,
        binary: &Path,
        engine: Option<&Path>,
    ) -> Result<Server, String> {
        let config = dir.path().join("latch.toml");
        std::fs::write(&config, RATE_LIMITS_LIFTED).map_err(|e| e.to_string())?;
        let stderr = dir.path().join("stderr.log");
        let stderr_file = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--sts-listen",
                "127.0.0.1:0",
                "--face-listen",
                "127.0.0.1:0",
            ])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("LATCH_LOG", "warn")
            // The front's scenarios measure its checks: an allowed call is the 501 of a front
            // without a backend, not an inference.
            .env(
                "LATCH_FACE_ENGINE",
                if engine.is_some() { "on" } else { "off" },
            )
            .envs(engine.map(|dir| ("LATCH_FACE_MODELS_DIR", dir)))
            .env_remove("LATCH_CONFIG")
            .env_remove("LATCH_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no standard output")?;
        let (mut sts, mut face, mut metrics) = (String::new(), String::new(), String::new());
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.map_err(|e| e.to_string())?;
            if let Some(url) = line.strip_prefix("latch: STS listening on ") {
                sts = url.to_owned();
            } else if let Some(url) = line.strip_prefix("latch: Face front listening on ") {
                face = url.to_owned();
            } else if let Some(url) = line.strip_prefix("latch: metrics listening on http://") {
                metrics = url.trim_end_matches("/metrics").to_owned();
            } else if line == "latch: ready" {
                break;
            }
        }
        let startup = started.elapsed();
        // Keep reading (and dropping) what it prints, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        if sts.is_empty() || face.is_empty() || metrics.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let said = std::fs::read_to_string(&stderr).unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "the server did not announce its listeners; its standard error ends:\n{}",
                tail.join("\n")
            ));
        }
        Ok(Server {
            child,
            dir,
            sts,
            face,
            metrics,
            stderr,
            stopped: false,
            startup,
            ticks_per_second: clock_ticks(),
        })
    }

    /// What the server has written to its standard error so far (its log).
    pub(crate) fn log(&self) -> String {
        std::fs::read(&self.stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Asks the server to stop (SIGTERM, a graceful shutdown) and waits for it, at most
    /// `patience`; then kills it. Its data directory stays until this is dropped.
    pub(crate) fn stop(&mut self, patience: Duration) -> Result<ExitStatus, String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + patience;
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.stopped = true;
                return Err(format!(
                    "the server did not stop within {} s of SIGTERM; killed",
                    patience.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stopped = true;
        Ok(status)
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A value of the server's `demo.env`.
    pub(crate) fn demo(&self, name: &str) -> Result<String, String> {
        let text = std::fs::read_to_string(self.data_dir().join("demo.env"))
            .map_err(|e| format!("demo.env: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .ok_or_else(|| format!("demo.env has no {name}"))
    }

    /// User plus system CPU time the server has used so far.
    pub(crate) fn cpu(&self) -> Duration {
        process_cpu(&self.child.id().to_string(), self.ticks_per_second)
    }

    /// Audit records and audit commits so far, from the server's metrics.
    pub(crate) fn audit_counts(&self) -> Result<(u64, u64), String> {
        Ok(audit_counts(&self.metrics_page()?))
    }

    /// The server's metrics page (`GET /metrics`), headers and all.
    pub(crate) fn metrics_page(&self) -> Result<String, String> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.metrics).map_err(|e| e.to_string())?;
        write!(
            conn,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        )
        .map_err(|e| e.to_string())?;
        let mut text = String::new();
        conn.read_to_string(&mut text).map_err(|e| e.to_string())?;
        Ok(text)
    }

    /// Resident memory now and at its peak, in bytes.
    pub(crate) fn memory(&self) -> (u64, u64) {
        (
            status_bytes(self.child.id(), "VmRSS:"),
            status_bytes(self.child.id(), "VmHWM:"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// utime + stime from a `/proc/<pid>/stat` line, in clock ticks.
fn cpu_ticks(stat: &str) -> u64 {
    // Fields after the command name, which is in parentheses and may hold spaces and ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields: the 12th and 13th after the name.
    ticks(11) + ticks(12)
}

/// The sums of `latch_audit_records_total` and of `latch_audit_batches_total` in a metrics page.
fn audit_counts(page: &str) -> (u64, u64) {
    let sum = |name: &str| -> u64 {
        page.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    (
        sum("latch_audit_records_total"),
        sum("latch_audit_batches_total"),
    )
}

/// User plus system CPU time of process `pid` (a number, or `self`) so far.
pub(crate) fn process_cpu(pid: &str, ticks_per_second: f64) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    Duration::from_secs_f64(cpu_ticks(&stat) as f64 / ticks_per_second)
}

/// User plus system CPU time so far, in clock ticks, of each of this process's threads named
/// `name` (thread names are cut to 15 bytes), by thread id.
pub(crate) fn threads_cpu(name: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let comm = comm.trim_end();
            if !comm.is_empty() && name.starts_with(comm) {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                out.insert(
                    task.file_name().to_string_lossy().into_owned(),
                    cpu_ticks(&stat),
                );
            }
        }
    }
    out
}

/// The CPU time the threads in `after` spent since `before` (threads that ended meanwhile are
/// not counted).
pub(crate) fn threads_cpu_since(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    ticks_per_second: f64,
) -> Duration {
    let ticks: u64 = after
        .iter()
        .map(|(tid, t)| t.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_second)
}

/// Clock ticks per second, for `/proc/<pid>/stat`.
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process's peak resident size so far, in bytes (0 once it is gone).
pub(crate) fn peak_resident(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size in `/proc/<pid>/status` (`VmRSS:`, ...), in bytes.
fn status_bytes(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (latch (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(super::cpu_ticks(stat), 325);
        assert_eq!(super::cpu_ticks("garbage"), 0);
    }

    #[test]
    fn audit_counts_add_up_every_series_of_their_metric_only() {
        let page = "# HELP latch_audit_records_total x\n\
            latch_audit_records_total{type=\"a\",outcome=\"success\"} 40\n\
            latch_audit_records_total{type=\"b\",outcome=\"refused\"} 2\n\
            latch_audit_records_totalled 1000\n\
            latch_audit_batches_total 6\n\
            latch_audit_batches_total_other 9\n";
        assert_eq!(super::audit_counts(page), (42, 6));
        assert_eq!(super::audit_counts(""), (0, 0));
    }
}
