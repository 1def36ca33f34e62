//! `latch serve`: catch the signals, check the open-file limit, bind the listeners of the
//! services this process runs (`--role`), and run them until SIGINT or SIGTERM.

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::output::CliError;
use crate::server::{self, Listeners};

pub(crate) async fn run(config: Config, args: ServeArgs) -> Result<(), CliError> {
    // First of all: from here on SIGHUP does not end the process (it reloads the certificate
    // once serving), and SIGTERM or SIGINT stop the server gracefully.
    let _hangup = crate::tls::hangup_signal();
    let shutdown = Shutdown::install();
    ensure_open_files(&config, args.role)?;
    let listeners = Listeners::bind(&config, args.role).await?;
    server::run(config, listeners, shutdown.requested()).await
}

/// Enough descriptors for every connection the configuration allows, or no start.
fn ensure_open_files(config: &Config, role: crate::cli::Role) -> Result<(), CliError> {
    let (sts, face, admin) = role.services();
    let tls = config.tls.is_on();
    let limits = &config.server;
    let listening: Vec<_> = [
        (sts, limits.limits, tls),
        (face, limits.without_request_timeout(), tls),
        (admin, limits.limits, tls),
        (config.metrics_listen.is_some(), limits.limits, false),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, l, tls)| (l, tls))
    .collect();
    let needed = crate::open_files::needed(
        &listening,
        latch_tls::HandshakeLimits::default().max_in_progress,
    );
    let open_files = crate::open_files::ensure(needed).map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("not enough file descriptors: {e}"),
            crate::exit::FAILURE,
        )
    })?;
    tracing::info!(target: "latch::serve", open_files, needed, "open-file limit");
    Ok(())
}

#[cfg(unix)]
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// SIGINT and SIGTERM, caught from the start: one arriving before the server is ready still
/// shuts it down gracefully instead of killing it.
struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(target: "latch::serve", error = %e, "cannot watch {name}");
                    None
                }
            };
            Shutdown {
                term: watch(SignalKind::terminate(), "SIGTERM"),
                interrupt: watch(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    async fn requested(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
