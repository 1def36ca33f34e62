//! The reads every request is checked with, answered from memory while the state is unchanged.
//!
//! An authenticated request reads the same few things: the resource a key belongs to, a
//! resource, whether a token is revoked, whether a client is blocked. They change only when an
//! operator or an ISV changes them, which is rare; they are read on every call, which is not.
//! [`CheckCache`] remembers the answers and knows when to forget them:
//!
//! * **Changes made in this process** are seen at once: every store counts the state changes
//!   committed through it ([`Store::changes_here`]), and a cache that sees the count move forgets
//!   everything before it answers.
//! * **Changes made by any process** (the admin CLI, another replica) move the store's
//!   [`Store::state_version`], in the transaction that makes the change. The cache reads it when
//!   its last reading is older than `max_age`; with `max_age` zero it reads it on every call, so
//!   no change is ever missed, at the price of one small read per call instead of several.
//! * **Answers are loaded again** at least every [`MAX_ENTRY_AGE`] (or a shorter entry age),
//!   whatever the version says.
//!
//! Revocations are held whole: entries leave the table with the tokens they cover, so it is
//! small, and a token never seen before (a new `jti` on every device session) is then checked
//! without a read. Beyond [`MAX_HELD_REVOCATIONS`] entries, each token's answer is read and
//! remembered instead.
//!
//! A load that started before the cache forgot (an epoch ago) is not remembered, so an answer
//! read before a change can never outlive the next forgetting. Nor is an answer the store gave
//! from an outage memory ([`Store::stale_answers`] moved during the load): only the database's
//! own answers are kept. If the version cannot be read, nothing is answered from memory: every
//! read goes to the store, which fails closed (or, wrapped in
//! [`crate::stale::StaleIfError`], answers within its own bound), and the version is tried again
//! at most every `max_age`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latch_core::audit::KeySlot;
use latch_core::secret::KeyDigest;
use latch_core::{ResourceId, UnixTime};
use tokio::time::Instant;

use crate::{Resource, Result, RevocationEntry, Store};

/// Remembered answers per kind; a kind that reaches it is forgotten whole.
pub const MAX_ENTRIES: usize = 10_000;
/// The longest an answer is used before it is read again.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(10);
/// The most revocation entries held in memory.
pub const MAX_HELD_REVOCATIONS: usize = 100_000;

/// The resource a key belongs to, its slot and the stored digest.
pub type KeyOwner = (Arc<Resource>, KeySlot, KeyDigest);

/// A store's check reads, remembered while the state is unchanged; cheap to clone.
#[derive(Clone)]
pub struct CheckCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CheckCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckCache")
            .field("max_age", &self.inner.max_age)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    max_age: Duration,
    entry_age: Duration,
    max_held: usize,
    state: Mutex<State>,
}

/// The revocation table, held.
#[derive(Default)]
struct Revocations {
    jtis: std::collections::HashSet<String>,
    isv: HashMap<String, i64>,
    target: HashMap<String, i64>,
    isv_target: HashMap<String, i64>,
}

impl Revocations {
    fn new(entries: Vec<RevocationEntry>) -> Self {
        let mut held = Revocations::default();
        for e in entries {
            let before = |map: &mut HashMap<String, i64>, subject: String| {
                if let Some(before) = e.before {
                    map.insert(subject, before.0);
                }
            };
            match e.scope.as_str() {
                "jti" => {
                    held.jtis.insert(e.subject);
                }
                "isv" => before(&mut held.isv, e.subject),
                "target" => before(&mut held.target, e.subject),
                "isv_target" => before(&mut held.isv_target, e.subject),
                // The table allows no other scope.
                _ => {}
            }
        }
        held
    }

    /// [`Store::is_revoked`], answered from the entries: exactly its SQL.
    fn cover(&self, jti: &str, isv: &ResourceId, target: &ResourceId, iat: UnixTime) -> bool {
        let earlier = |map: &HashMap<String, i64>, subject: &str| {
            map.get(subject).is_some_and(|before| iat.0 < *before)
        };
        self.jtis.contains(jti)
            || earlier(&self.isv, isv.canonical())
            || earlier(&self.target, target.canonical())
            || (!self.isv_target.is_empty()
                && earlier(
                    &self.isv_target,
                    &format!("{} {}", isv.canonical(), target.canonical()),
                ))
    }
}

/// What the cache holds of the revocation table.
#[derive(Default)]
enum Held {
    /// Nothing yet, in this epoch.
    #[default]
    Unknown,
    /// The whole table, read at that instant.
    All(Arc<Revocations>, Instant),
    /// More than the cache holds: each token's answer is read.
    TooMany(Instant),
}

type RevocationKey = (String, String, String, i64);

#[derive(Default)]
struct State {
    /// Moves each time everything is forgotten.
    epoch: u64,
    /// The state version and local change count the entries were read at; `None` while the
    /// version cannot be read.
    version: Option<u64>,
    local: u64,
    /// When the version was last read; `None` forces a reading.
    checked: Option<Instant>,
    keys: HashMap<[u8; 32], (KeyOwner, Instant)>,
    resources: HashMap<String, (Arc<Resource>, Instant)>,
    revoked: HashMap<RevocationKey, (bool, Instant)>,
    blocked: HashMap<(String, String), (bool, Instant)>,
    revocations: Held,
}

impl State {
    fn forget(&mut self) {
        self.epoch += 1;
        self.keys.clear();
        self.resources.clear();
        self.revoked.clear();
        self.blocked.clear();
        self.revocations = Held::Unknown;
    }
}

impl CheckCache {
    /// A cache over `store` that reads the state version when its last reading is older than
    /// `max_age` (zero: on every call).
    pub fn new(store: Arc<dyn Store>, max_age: Duration) -> Self {
        Self::with_limits(store, max_age, MAX_ENTRY_AGE, MAX_HELD_REVOCATIONS)
    }

    /// Like [`CheckCache::new`], with answers loaded again after `entry_age` (at most
    /// [`MAX_ENTRY_AGE`]) and the revocation table held only while it has at most `max_held`
    /// entries (0: never, each token's answer is read; what an outage memory under the cache
    /// needs, since it can answer only what it was asked).
    pub fn with_limits(
        store: Arc<dyn Store>,
        max_age: Duration,
        entry_age: Duration,
        max_held: usize,
    ) -> Self {
        CheckCache {
            inner: Arc::new(Inner {
                store,
                max_age,
                entry_age: entry_age.min(MAX_ENTRY_AGE),
                max_held,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// [`Store::resource_by_key`]; only keys that exist are remembered.
    pub async fn resource_by_key(&self, digest: &KeyDigest) -> Result<Option<KeyOwner>> {
        let store = &self.inner.store;
        let epoch = self.current().await;
        self.remembered(epoch, |s| &mut s.keys, digest.0, async {
            Ok(store
                .resource_by_key(digest)
                .await?
                .map(|(r, slot, stored)| (Arc::new(r), slot, stored)))
        })
        .await
    }

    /// [`Store::resource`]; only resources that exist are remembered.
    pub async fn resource(&self, id: &ResourceId) -> Result<Option<Arc<Resource>>> {
        let store = &self.inner.store;
        let epoch = self.current().await;
        self.remembered(
            epoch,
            |s| &mut s.resources,
            id.canonical().to_owned(),
            async { Ok(store.resource(id).await?.map(Arc::new)) },
        )
        .await
    }

    /// [`Store::is_revoked`].
    pub async fn is_revoked(
        &self,
        jti: &str,
        isv: &ResourceId,
        target: &ResourceId,
        iat: UnixTime,
    ) -> Result<bool> {
        let epoch = self.current().await;
        if let Some(held) = self.held_revocations(epoch).await {
            return Ok(held.cover(jti, isv, target, iat));
        }
        let store = &self.inner.store;
        let key = (
            jti.to_owned(),
            isv.canonical().to_owned(),
            target.canonical().to_owned(),
            iat.0,
        );
        self.remembered(epoch, |s| &mut s.revoked, key, async {
            store.is_revoked(jti, isv, target, iat).await.map(Some)
        })
        .await
        .map(|answer| answer.unwrap_or(false))
    }

    /// [`Store::is_client_blocked`].
    pub async fn is_client_blocked(&self, isv: &ResourceId, client: &ResourceId) -> Result<bool> {
        let store = &self.inner.store;
        let key = (isv.canonical().to_owned(), client.canonical().to_owned());
        let epoch = self.current().await;
        self.remembered(epoch, |s| &mut s.blocked, key, async {
            store.is_client_blocked(isv, client).await.map(Some)
        })
        .await
        .map(|answer| answer.unwrap_or(false))
    }

    /// The revocation table of `epoch`, held if it is current, else read (and held when it is
    /// small enough, nothing changed meanwhile, and the store read it from the database); `None`
    /// when each token's answer is to be read instead.
    async fn held_revocations(&self, epoch: Option<u64>) -> Option<Arc<Revocations>> {
        if self.inner.max_held == 0 {
            return None;
        }
        let epoch = epoch?;
        {
            let state = self.lock();
            if state.epoch == epoch {
                match &state.revocations {
                    Held::All(held, at) if at.elapsed() < self.inner.entry_age => {
                        return Some(held.clone())
                    }
                    Held::TooMany(at) if at.elapsed() < self.inner.entry_age => return None,
                    _ => {}
                }
            }
        }
        let loaded_at = Instant::now();
        let (entries, fresh) = self
            .load_noting_staleness(self.inner.store.revocations(self.inner.max_held))
            .await;
        let held = match entries {
            Ok(Some(entries)) => Held::All(Arc::new(Revocations::new(entries)), loaded_at),
            Ok(None) => Held::TooMany(loaded_at),
            // The per-token read fails closed, or the outage memory answers it.
            Err(_) => return None,
        };
        let answer = match &held {
            Held::All(all, _) => Some(all.clone()),
            _ => None,
        };
        let mut state = self.lock();
        if fresh && state.epoch == epoch {
            state.revocations = held;
        }
        answer
    }

    /// Runs `load`, and says whether its answer is the database's: not when an outage memory
    /// under the cache gave one meanwhile ([`Store::stale_answers`] moved). Such answers are
    /// passed on, never kept.
    async fn load_noting_staleness<T>(&self, load: impl Future<Output = T>) -> (T, bool) {
        let before = self.inner.store.stale_answers();
        let out = load.await;
        (out, self.inner.store.stale_answers() == before)
    }

    /// The answer for `key` in `epoch` (from [`CheckCache::current`]): remembered if it is
    /// current, else `load`ed (and remembered when it is `Some` and nothing changed meanwhile).
    async fn remembered<K, V>(
        &self,
        epoch: Option<u64>,
        map: impl Fn(&mut State) -> &mut HashMap<K, (V, Instant)>,
        key: K,
        load: impl Future<Output = Result<Option<V>>>,
    ) -> Result<Option<V>>
    where
        K: Hash + Eq,
        V: Clone,
    {
        let Some(epoch) = epoch else {
            return load.await;
        };
        {
            let mut state = self.lock();
            if state.epoch == epoch {
                if let Some((value, loaded)) = map(&mut state).get(&key) {
                    if loaded.elapsed() < self.inner.entry_age {
                        return Ok(Some(value.clone()));
                    }
                }
            }
        }
        let loaded_at = Instant::now();
        let (value, fresh) = self.load_noting_staleness(load).await;
        let value = value?;
        if let (Some(value), true) = (&value, fresh) {
            let mut state = self.lock();
            if state.epoch == epoch {
                let entries = map(&mut state);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(key, (value.clone(), loaded_at));
            }
        }
        Ok(value)
    }

    /// The epoch whose entries are current, after forgetting what a change made stale; `None`
    /// when the version cannot be read (then nothing may be answered from memory).
    async fn current(&self) -> Option<u64> {
        let store = &self.inner.store;
        let local = store.changes_here();
        {
            let state = self.lock();
            let recent = state
                .checked
                .is_some_and(|at| at.elapsed() < self.inner.max_age);
            if state.local == local && recent {
                // While the version is unreadable, tried again only once `max_age` has passed.
                return state.version.map(|_| state.epoch);
            }
        }
        let read_at = Instant::now();
        let reading = store.state_version().await;
        let mut state = self.lock();
        if state.checked.is_some_and(|at| at > read_at) && state.local == local {
            // A later reading came back first: this one is older news.
            return state.version.map(|_| state.epoch);
        }
        match reading {
            Ok(version) => {
                if state.version.is_none() {
                    tracing::info!(target: "latch::store", "state version readable again; checks answer from memory again");
                }
                if state.version != Some(version) || state.local != local {
                    state.forget();
                    state.version = Some(version);
                    state.local = local;
                }
                state.checked = Some(read_at);
                Some(state.epoch)
            }
            Err(e) => {
                if state.version.is_some() || state.checked.is_none() {
                    tracing::warn!(target: "latch::store", error = %e, "state version unreadable; every check goes to the store");
                }
                state.forget();
                state.version = None;
                state.local = local;
                state.checked = Some(read_at);
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: a panic elsewhere cannot leave it wrong, only partly filled.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
