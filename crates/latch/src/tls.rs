//! HTTPS for `serve`, and `latch tls`.
//!
//! `serve` checks the configured certificate before serving anything (a bad one exits with 78
//! and says why), then watches its files: once they have been replaced and stood still for a
//! second (or on SIGHUP), the new pair is checked the same way, an audit record of it is committed, and only then do new
//! handshakes get it. A pair that fails a check is logged, audited as refused, and the
//! certificate in service stays. Connections already open keep the certificate they started
//! with; none is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use latch_audit::signer::write_private;
use latch_audit::writer::AuditLog;
use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::{Clock, UnixTime};
use latch_tls::{CertificateSwitch, Cname, FileWatch, TlsError, VerifiedCertificate};

use crate::cli::TlsCommand;
use crate::config::{Config, TlsSetting};
use crate::exit;
use crate::output::{self, CliError};

/// The development certificate and key, in `<data_dir>/tls/`.
const DEV_DIR: &str = "tls";
const DEV_CERT: &str = "dev-cert.pem";
const DEV_KEY: &str = "dev-key.pem";
/// How long a development certificate made by `serve` is valid.
const DEV_DAYS: u32 = 90;
/// A certificate that expires sooner than this is reported at every start and every hour.
const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

/// The certificate and key files a configuration serves, and the name they must cover.
pub(crate) struct Files {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) cname: Cname,
    /// The self-signed development pair in `<data_dir>/tls/`.
    pub(crate) development: bool,
}

impl Files {
    /// `None` when TLS is off.
    pub(crate) fn of(config: &Config) -> Option<Files> {
        match &config.tls {
            TlsSetting::Off => None,
            TlsSetting::Files { cert, key, cname } => Some(Files {
                cert: cert.clone(),
                key: key.clone(),
                cname: cname.clone(),
                development: false,
            }),
            TlsSetting::Development { cname } => {
                let dir = config.data_dir.join(DEV_DIR);
                Some(Files {
                    cert: dir.join(DEV_CERT),
                    key: dir.join(DEV_KEY),
                    cname: cname.clone(),
                    development: true,
                })
            }
        }
    }
}

/// HTTPS as `serve` runs it.
pub(crate) struct Tls {
    pub(crate) switch: CertificateSwitch,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    pub(crate) cname: Cname,
    cert: PathBuf,
    key: PathBuf,
    development: bool,
}

impl Tls {
    /// Checks the configured certificate (making the development one if it is missing, for
    /// another name, or expired), and starts watching its files from before it is read, so a
    /// replacement during startup is not missed. `None` when TLS is off.
    pub(crate) fn prepare(
        config: &Config,
        now: UnixTime,
    ) -> Result<Option<(Tls, FileWatch)>, CliError> {
        let Some(files) = Files::of(config) else {
            return Ok(None);
        };
        let Files {
            cert,
            key,
            cname,
            development,
        } = files;
        if development {
            if let Err(e) = VerifiedCertificate::load(&cert, &key, &cname, now) {
                if cert.exists() {
                    tracing::info!(target: "latch::tls", reason = %e, "making a new development certificate");
                }
                write_self_signed(&cert, &key, &cname, now, DEV_DAYS, true)?;
            }
        }
        let watch = FileWatch::new(&cert, &key);
        let first = VerifiedCertificate::load(&cert, &key, &cname, now)
            .map_err(|e| refused_at_start(&cert, &e))?;
        let switch = CertificateSwitch::new(first);
        let server_config = latch_tls::server_config(&switch)
            .map_err(|e| CliError::new("ConfigurationError", format!("tls: {e}"), exit::CONFIG))?;
        let tls = Tls {
            switch,
            server_config,
            cname,
            cert,
            key,
            development,
        };
        tls.report(now);
        Ok(Some((tls, watch)))
    }

    /// Says what is in service, and warns of what an operator must act on.
    fn report(&self, now: UnixTime) {
        let s = self.switch.summary();
        tracing::info!(
            target: "latch::tls",
            cname = %self.cname,
            fingerprint = %s.fingerprint,
            names = %s.names.join(","),
            not_after = %s.not_after.to_rfc3339(),
            certificate = %self.cert.display(),
            "TLS certificate in service"
        );
        if self.development || s.self_signed {
            let message = format!(
                "latch: WARNING: {} is a self-signed certificate for {}: for development only. Clients must be told to trust it (curl --cacert {}); configure [tls] cert, key and cname for production.",
                self.cert.display(),
                self.cname,
                self.cert.display()
            );
            tracing::warn!(target: "latch::tls", "{message}");
            output::line(&message);
        }
        warn_if_expiring(&s.not_after, now);
    }

    /// The audit record of the certificate in service.
    fn installed(&self, reason: &str) -> AuditEvent {
        let s = self.switch.summary();
        installed_event(reason, &self.cname, &s)
    }
}

fn installed_event(reason: &str, cname: &Cname, s: &latch_tls::CertificateSummary) -> AuditEvent {
    AuditEvent::TlsCertificateInstalled {
        reason: reason.to_owned(),
        cname: cname.to_string(),
        fingerprint: s.fingerprint.clone(),
        names: s.names.clone(),
        not_before: s.not_before.to_rfc3339(),
        not_after: s.not_after.to_rfc3339(),
        self_signed: s.self_signed,
    }
}

fn warn_if_expiring(not_after: &UnixTime, now: UnixTime) {
    let left = not_after.0 - now.0;
    if left < 0 {
        tracing::error!(target: "latch::tls", not_after = %not_after.to_rfc3339(), "the certificate in service has expired: clients refuse it; replace the files");
    } else if left < EXPIRY_WARNING_SECS {
        tracing::warn!(target: "latch::tls", not_after = %not_after.to_rfc3339(), days_left = left / 86_400, "the certificate expires soon: renew it (replacing the files is enough)");
    }
}

fn refused_at_start(cert: &Path, e: &TlsError) -> CliError {
    CliError::new(
        "ConfigurationError",
        format!("tls: {}: {e}", cert.display()),
        exit::CONFIG,
    )
}

/// Writes a self-signed certificate and its key (owner-only); refuses to overwrite unless
/// `replace`.
fn write_self_signed(
    cert: &Path,
    key: &Path,
    cname: &Cname,
    now: UnixTime,
    days: u32,
    replace: bool,
) -> Result<(), CliError> {
    let made = latch_tls::dev::self_signed(cname, now, days)
        .map_err(|e| CliError::new("Failed", e.to_string(), exit::FAILURE))?;
    for path in [cert, key] {
        if !replace && path.exists() {
            return Err(CliError::new(
                "AlreadyExists",
                format!("{} exists; remove it first", path.display()),
                exit::ALREADY_EXISTS,
            ));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| write_failed(dir, &e))?;
        }
    }
    if !replace {
        write_private(key, made.key_pem.as_bytes(), true).map_err(|e| write_failed(key, &e))?;
        return std::fs::write(cert, made.certificate_pem.as_bytes())
            .map_err(|e| write_failed(cert, &e));
    }
    // Each file whole, then renamed into place: never a half-written pair.
    for (path, bytes) in [
        (key, made.key_pem.as_bytes()),
        (cert, made.certificate_pem.as_bytes()),
    ] {
        let tmp = path.with_extension("pem.new");
        write_private(&tmp, bytes, false).map_err(|e| write_failed(&tmp, &e))?;
        std::fs::rename(&tmp, path).map_err(|e| write_failed(path, &e))?;
    }
    Ok(())
}

fn write_failed(path: &Path, e: &dyn std::fmt::Display) -> CliError {
    CliError::new(
        "Failed",
        format!("cannot write {}: {e}", path.display()),
        exit::FAILURE,
    )
}

/// Records the certificate `serve` starts with; nothing is served before it is committed.
pub(crate) async fn record_startup(
    tls: &Tls,
    audit: &AuditLog,
    clock: &dyn Clock,
) -> Result<(), CliError> {
    audit
        .record(draft(clock, tls.installed("startup")))
        .await
        .map(|_| ())
        .map_err(|e| {
            CliError::new(
                "StartupFailed",
                format!("cannot write the audit log: {e}"),
                exit::FAILURE,
            )
        })
}

fn draft(clock: &dyn Clock, event: AuditEvent) -> AuditDraft {
    AuditDraft {
        time: clock.now(),
        request_id: None,
        actor: Actor::System,
        event,
    }
}

/// Until stopped: every second, look whether the certificate files were replaced; on SIGHUP,
/// look at once. Every hour, warn of a certificate about to expire. Without TLS, SIGHUP is only
/// logged (it must not stop the server, as its default action would).
pub(crate) async fn renew(
    tls: Option<(Arc<Tls>, FileWatch)>,
    mut hangup: Hangup,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (tls, mut watch) = match tls {
        Some((tls, watch)) => (Some(tls), Some(watch)),
        None => (None, None),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // A late tick is not followed by a burst: "stood still for a poll" means a second.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        let reason = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            _ = tick.tick() => {
                ticks += 1;
                let Some(tls) = &tls else { continue };
                if ticks % 3600 == 0 {
                    warn_if_expiring(&tls.switch.summary().not_after, clock.now());
                }
                if !watch.as_mut().is_some_and(FileWatch::poll) {
                    continue;
                }
                "files changed"
            }
            Some(()) = recv(&mut hangup) => "SIGHUP",
        };
        let (Some(tls), Some(watch)) = (&tls, watch.as_mut()) else {
            tracing::info!(target: "latch::tls", "SIGHUP: TLS is off, nothing to reload");
            continue;
        };
        watch.settle();
        reload(tls, &audit, clock.as_ref(), reason, watch).await;
    }
}

async fn reload(
    tls: &Tls,
    audit: &AuditLog,
    clock: &dyn Clock,
    reason: &str,
    watch: &mut FileWatch,
) {
    let now = clock.now();
    let next = match VerifiedCertificate::load(&tls.cert, &tls.key, &tls.cname, now) {
        Ok(next) => next,
        Err(e) => {
            tracing::error!(
                target: "latch::tls",
                %reason,
                certificate = %tls.cert.display(),
                key = %tls.key.display(),
                error = %e,
                "new certificate refused; the one in service stays"
            );
            let refused = AuditEvent::TlsCertificateRefused {
                reason: reason.to_owned(),
                error: e.to_string(),
            };
            if let Err(e) = audit.record(draft(clock, refused)).await {
                tracing::error!(target: "latch::audit", error = %e, "cannot audit a refused certificate");
            }
            return;
        }
    };
    let summary = next.summary().clone();
    if summary.fingerprint == tls.switch.summary().fingerprint {
        tracing::info!(target: "latch::tls", %reason, "certificate unchanged");
        return;
    }
    // The record first: a certificate nobody can account for never serves.
    let event = installed_event(reason, &tls.cname, &summary);
    if let Err(e) = audit.record(draft(clock, event)).await {
        tracing::error!(target: "latch::tls", error = %e, "cannot audit the new certificate; the one in service stays, and the files are tried again");
        watch.unsettle();
        return;
    }
    tls.switch.install(next);
    tracing::info!(
        target: "latch::tls",
        %reason,
        fingerprint = %summary.fingerprint,
        not_after = %summary.not_after.to_rfc3339(),
        "new certificate in service for new connections"
    );
    if summary.self_signed {
        tracing::warn!(target: "latch::tls", "the new certificate is self-signed: for development only");
    }
    warn_if_expiring(&summary.not_after, now);
}

#[cfg(unix)]
pub(crate) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(crate) type Hangup = Option<()>;

/// SIGHUP from now on reloads the certificate instead of ending the process (its default
/// action): `serve` calls this first thing.
pub(crate) fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(target: "latch::tls", error = %e, "cannot watch SIGHUP; certificate files are still watched");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    let _ = hangup;
    std::future::pending().await
}

/// Whether `url` is plain HTTP to a host other than this one: whatever credential it carries
/// can be read on the way.
pub(crate) fn plain_http_to_another_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Warns when a listener without TLS takes connections from other hosts: their keys and
/// tokens would cross the network in the clear.
pub(crate) fn warn_plain_http(what: &str, addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        let message = format!(
            "latch: WARNING: the {what} listens on {addr} without TLS: subscription keys and tokens from other hosts cross the network in the clear. Keep it behind a proxy that terminates TLS."
        );
        tracing::warn!(target: "latch::tls", "{message}");
        output::line(&message);
    }
}

/// `latch tls ...`.
pub(crate) fn run(config: &Config, command: TlsCommand, clock: &dyn Clock) -> Result<(), CliError> {
    match command {
        TlsCommand::SelfSigned { cname, out, days } => {
            let cname = Cname::parse(&cname).map_err(|e| CliError::usage(e.to_string()))?;
            if !(1..=825).contains(&days) {
                return Err(CliError::usage("--days must be 1 to 825"));
            }
            let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
            write_self_signed(&cert, &key, &cname, clock.now(), days, false)?;
            output::line(&format!(
                "latch: wrote {} and {} (owner-only) for {cname}, valid {days} days.\nFor development only: clients trust it only when told to (curl --cacert {}).\nServe it with: latch serve --tls-cert {} --tls-key {} --tls-cname {cname}",
                cert.display(),
                key.display(),
                cert.display(),
                cert.display(),
                key.display(),
            ));
            Ok(())
        }
        TlsCommand::Check => {
            let Some(Files {
                cert, key, cname, ..
            }) = Files::of(config)
            else {
                return Err(CliError::usage(
                    "TLS is off (tls.mode = off): nothing to check",
                ));
            };
            let ok = VerifiedCertificate::load(&cert, &key, &cname, clock.now())
                .map_err(|e| refused_at_start(&cert, &e))?;
            let s = ok.summary();
            output::line(&format!(
                "latch: {} and {} are fit to serve {cname}\n  names: {}\n  valid: {} to {}\n  sha256: {}\n  chain: {} certificate(s){}",
                cert.display(),
                key.display(),
                s.names.join(", "),
                s.not_before.to_rfc3339(),
                s.not_after.to_rfc3339(),
                s.fingerprint,
                s.chain_length,
                if s.self_signed { "\n  self-signed: for development only" } else { "" },
            ));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plain_http_to_another_host as clear;

    #[test]
    fn plain_http_is_flagged_unless_it_stays_on_this_host() {
        for url in [
            "http://10.0.0.7:8702",
            "http://sts.example.com/admin",
            "http://[2001:db8::1]:80",
            "http://user@face.example.com",
        ] {
            assert!(clear(url), "{url}");
        }
        for url in [
            "https://10.0.0.7:8702",
            "http://127.0.0.1:8702",
            "http://localhost:8702/x",
            "http://LOCALHOST",
            "http://[::1]:8702",
        ] {
            assert!(!clear(url), "{url}");
        }
    }
}
