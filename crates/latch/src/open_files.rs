//! Enough file descriptors for the connections the configuration allows.
//!
//! Every connection is a file descriptor. A process that runs out cannot accept, cannot open its
//! store and cannot write its log; so before anything is bound, `serve` raises its soft
//! `RLIMIT_NOFILE` to the hard limit (the part a process may raise by itself) and refuses to
//! start when even that cannot hold what the configuration allows: on every listener its
//! established connections and, with TLS, its handshakes in progress, plus a reserve for the
//! store, the log and the engine's files.

use latch_http::server::ConnectionLimits;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for everything that is not a client connection.
pub(crate) const RESERVE: u64 = 256;

/// What the configuration can hold open at once.
pub(crate) fn needed(listeners: &[(ConnectionLimits, bool)], handshakes: usize) -> u64 {
    let connections: usize = listeners
        .iter()
        .map(|(limits, tls)| limits.max_connections + if *tls { handshakes } else { 0 })
        .sum();
    connections as u64 + RESERVE
}

/// Why the limit cannot hold the configuration.
#[derive(Debug, thiserror::Error)]
#[error("the open-file limit ({limit}) cannot hold the {needed} descriptors the configuration allows (server.max_connections on each listener, TLS handshakes in progress and a reserve of {RESERVE}): raise the hard limit (LimitNOFILE= in the systemd unit, ulimit -Hn) or lower server.max_connections")]
pub(crate) struct TooFewFiles {
    pub(crate) limit: u64,
    pub(crate) needed: u64,
}

/// Raises the soft limit to the hard one; the soft limit now, if it holds `needed`.
pub(crate) fn ensure(needed: u64) -> Result<u64, TooFewFiles> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let hard = maximum.unwrap_or(u64::MAX);
    let soft = current.unwrap_or(u64::MAX);
    let soft = if soft < hard {
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: maximum,
                maximum,
            },
        ) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(target: "latch::serve", error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        }
    } else {
        soft
    };
    if soft < needed {
        return Err(TooFewFiles {
            limit: soft,
            needed,
        });
    }
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_needed_counts_connections_handshakes_and_the_reserve() {
        let limits = ConnectionLimits::default();
        let three_tls = [(limits, true), (limits, true), (limits, true)];
        assert_eq!(needed(&three_tls, 1024), 3 * (4096 + 1024) + RESERVE);
        let plain = [(limits, false)];
        assert_eq!(needed(&plain, 1024), 4096 + RESERVE);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_and_checked() {
        let before = getrlimit(Resource::Nofile);
        let hard = before.maximum.unwrap_or(u64::MAX);
        let soft = ensure(64).unwrap();
        assert_eq!(soft, hard, "from {:?}", before.current);
        assert_eq!(
            getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX),
            soft
        );
        if hard < u64::MAX {
            let e = ensure(hard + 1).unwrap_err();
            assert_eq!((e.limit, e.needed), (hard, hard + 1));
            assert!(e.to_string().contains("server.max_connections"));
        }
    }
}
