//! What keeps one caller from taking the STS, or its audit log, for itself.
//!
//! * **Per client address**, before anything else ([`by_address`], a layer): a token bucket for
//!   each address (IPv6: each /64), so a flood from one place is answered 429 at the cost of a
//!   hash lookup.
//! * **Per key**, once the key is known: a bucket for each key of each resource, so one
//!   back-end cannot starve the others sharing an address (a NAT, a proxy).
//! * **Refusals without a credential are counted, not recorded one by one.** A request refused
//!   for a missing or wrong key, or over a rate limit, is tallied in memory by client address;
//!   every `refusal_summary` interval each address's tally becomes one durable audit record
//!   ([`AuditEvent::RefusalsCounted`]: count, first and last time, reasons). A flood is visible
//!   to auditors and costs the log one record per address and interval, not one per request.
//!   Every other refusal (a valid key asking for too much, a bad body) is recorded on its own,
//!   before it is answered, as before.
//!
//! Over a limit, the answer is Azure's 429 with `Retry-After`. Behind a proxy the client
//! address comes from the header the operator trusts (`server.client_address_header`) and
//! nowhere else.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use latch_audit::writer::AuditLog;
use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::{Clock, UnixTime};
use latch_http::client_address::ClientAddresses;
use latch_http::rate_limit::{too_many_requests, Limiter, RateLimit};
use latch_http::server::address_key;

use crate::AppState;

/// The STS's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct StsLimits {
    /// Calls per key (one key of one resource).
    pub per_key: RateLimit,
    /// Calls per client address.
    pub per_address: RateLimit,
    /// How often the tallied refusals are written, one record per address.
    pub refusal_summary: Duration,
    /// Where a request's client address comes from.
    pub client_addresses: ClientAddresses,
}

impl Default for StsLimits {
    /// An ISV back-end issuing for many devices needs more than a device's 10 calls a second;
    /// one that needs more than this raises it.
    fn default() -> Self {
        StsLimits {
            per_key: RateLimit {
                per_second: 100.0,
                burst: 200.0,
            },
            per_address: RateLimit {
                per_second: 200.0,
                burst: 400.0,
            },
            refusal_summary: Duration::from_secs(60),
            client_addresses: ClientAddresses::peer(),
        }
    }
}

/// Where a request came from, as the tally and the address limit count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// An address (IPv6: its /64).
    Address(IpAddr),
    /// Past the tally's bound on addresses.
    Others,
    /// A request from no connection (an in-process call).
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Address(ip) => write!(f, "{ip}"),
            Source::Others => f.write_str("others"),
            Source::Unknown => f.write_str("unknown"),
        }
    }
}

/// Why a refusal was tallied rather than recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tallied {
    /// No key, several, or a key of no resource.
    InvalidKey,
    /// Over a rate limit.
    RateLimited,
}

impl Tallied {
    fn reason(self) -> &'static str {
        match self {
            Tallied::InvalidKey => "invalid_key",
            Tallied::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug)]
struct Tally {
    count: u64,
    first: UnixTime,
    last: UnixTime,
    reasons: BTreeMap<&'static str, u64>,
}

/// At most this many addresses are tallied apart in one interval; the rest count as `others`.
const MOST_SOURCES: usize = 1_000;

/// The refusals counted since the last summary.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    tallies: Mutex<HashMap<Source, Tally>>,
}

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, HashMap<Source, Tally>> {
        match self.tallies.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Counts one refusal from `source` at `now`.
    pub(crate) fn count(&self, source: Source, why: Tallied, now: UnixTime) {
        let mut tallies = self.lock();
        let source = if tallies.len() >= MOST_SOURCES && !tallies.contains_key(&source) {
            Source::Others
        } else {
            source
        };
        let tally = tallies.entry(source).or_insert(Tally {
            count: 0,
            first: now,
            last: now,
            reasons: BTreeMap::new(),
        });
        tally.count += 1;
        tally.last = now;
        *tally.reasons.entry(why.reason()).or_default() += 1;
    }

    /// Everything counted so far, as one event per source; the tally starts again.
    fn take(&self) -> Vec<AuditEvent> {
        let taken = std::mem::take(&mut *self.lock());
        let mut events: Vec<AuditEvent> = taken
            .into_iter()
            .map(|(source, t)| AuditEvent::RefusalsCounted {
                service: "sts".into(),
                source: source.to_string(),
                count: t.count,
                first: t.first,
                last: t.last,
                reasons: t
                    .reasons
                    .into_iter()
                    .map(|(r, n)| (r.to_owned(), n))
                    .collect(),
            })
            .collect();
        // The same order every time: an auditor reads them by time, then address.
        events.sort_by_key(|e| match e {
            AuditEvent::RefusalsCounted { first, source, .. } => (first.0, source.clone()),
            _ => (0, String::new()),
        });
        events
    }
}

/// Writes the tallied refusals to the audit log: every interval, and once more at the end.
#[derive(Clone)]
pub struct RefusalSummaries {
    refusals: Arc<Refusals>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    every: Duration,
}

impl RefusalSummaries {
    pub(crate) fn new(
        refusals: Arc<Refusals>,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> Self {
        RefusalSummaries {
            refusals,
            audit,
            clock,
            every,
        }
    }

    /// Writes what has been counted, one record per address, all at once (so the writer commits
    /// them together); how many records.
    pub async fn flush(&self) -> usize {
        let events = self.refusals.take();
        let n = events.len();
        let mut writes = tokio::task::JoinSet::new();
        for event in events {
            let draft = AuditDraft {
                time: self.clock.now(),
                request_id: None,
                actor: Actor::Anonymous,
                event,
            };
            let audit = self.audit.clone();
            writes.spawn(async move { audit.record(draft).await });
        }
        while let Some(written) = writes.join_next().await {
            if !matches!(written, Ok(Ok(_))) {
                // These refusals were answered already; what is lost is a count of them, and
                // the log says so.
                tracing::error!(target: "latch::sts", "a refusal summary could not be written");
            }
        }
        n
    }

    /// Flushes every interval until `stopped`; the last flush is the caller's, once the
    /// service has stopped answering (so nothing counted after this returns is lost).
    pub async fn run(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.flush().await; }
                () = &mut stop => return,
            }
        }
    }
}

/// The client address a layer found for this request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientSource(pub(crate) Source);

/// The per-address limit, before anything else; it also tells the handlers the source.
pub(crate) async fn by_address(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let inner = &state.inner;
    let source = inner
        .config
        .limits
        .client_addresses
        .of(request.headers(), request.extensions())
        .map_or(Source::Unknown, |ip| Source::Address(address_key(ip)));
    if let Source::Address(ip) = source {
        if let Err(retry_after) = inner.by_address.check(&ip, Instant::now()) {
            inner
                .refusals
                .count(source, Tallied::RateLimited, inner.clock.now());
            return too_many_requests(retry_after);
        }
    }
    request.extensions_mut().insert(ClientSource(source));
    next.run(request).await
}

/// The limiters of a service.
pub(crate) fn limiters(limits: &StsLimits) -> (Limiter<IpAddr>, Limiter<String>) {
    (
        Limiter::new(limits.per_address),
        Limiter::new(limits.per_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_tallied_per_source_with_their_span_and_reasons() {
        let r = Refusals::default();
        let a = Source::Address("192.0.2.1".parse().unwrap());
        let b = Source::Address("192.0.2.2".parse().unwrap());
        r.count(a, Tallied::InvalidKey, UnixTime(100));
        r.count(a, Tallied::InvalidKey, UnixTime(105));
        r.count(a, Tallied::RateLimited, UnixTime(107));
        r.count(b, Tallied::InvalidKey, UnixTime(101));
        let events = r.take();
        assert_eq!(events.len(), 2);
        let AuditEvent::RefusalsCounted {
            source,
            count,
            first,
            last,
            reasons,
            service,
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            (service.as_str(), source.as_str(), *count, *first, *last),
            ("sts", "192.0.2.1", 3, UnixTime(100), UnixTime(107))
        );
        assert_eq!(reasons["invalid_key"], 2);
        assert_eq!(reasons["rate_limited"], 1);
        assert!(r.take().is_empty(), "the tally starts again");
    }

    #[test]
    fn past_the_bound_on_addresses_the_rest_count_together() {
        let r = Refusals::default();
        for i in 0..(MOST_SOURCES as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.count(Source::Address(ip), Tallied::InvalidKey, UnixTime(1));
        }
        let events = r.take();
        assert_eq!(events.len(), MOST_SOURCES + 1);
        let others = events
            .iter()
            .find_map(|e| match e {
                AuditEvent::RefusalsCounted { source, count, .. } if source == "others" => {
                    Some(*count)
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(others, 500);
    }
}
