//! The store suite. Every backend passes it: each test runs once on the embedded store in a
//! temporary folder and once on PostgreSQL (the server at `LATCH_TEST_DATABASE_URL`, default
//! `host=127.0.0.1 user=postgres dbname=test`), in a schema of its own that is dropped
//! afterwards.

use std::sync::Arc;

use latch_audit::writer::AuditLog;
use latch_audit::AuditStore;
use latch_core::audit::{verify_chain, Actor, AuditDraft, AuditEvent, KeySlot, GENESIS};
use latch_core::secret::{KeyDigest, Pepper};
use latch_core::{FeatureSet, ResourceId, UnixTime};
use ring::rand::SystemRandom;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{AuthMode, Resource, Revocation, Store, StoreError, StoredSigningKey};

const ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";
const CLIENT: &str = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/client/providers/Microsoft.CognitiveServices/accounts/client-face";
const CHAIN: &str = "main";

fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

fn draft(event: AuditEvent) -> AuditDraft {
    AuditDraft {
        time: UnixTime(1_000),
        request_id: None,
        actor: Actor::LocalOperator,
        event,
    }
}

fn resource(s: &str) -> Resource {
    Resource {
        id: id(s),
        created_at: UnixTime(1_000),
        isv_enabled: false,
        isv_grants: FeatureSet::new(),
        approvals: FeatureSet::new(),
        auth_mode: AuthMode::Key,
    }
}

/// A store under test, with a folder for the files kept beside it (the audit key).
struct Fixture {
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    backend: Backend,
}

enum Backend {
    Sqlite,
    /// The connection string (with the schema as search path) and the schema.
    Postgres {
        url: String,
        schema: String,
    },
}

fn database_url() -> String {
    std::env::var("LATCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), CHAIN, &SystemRandom::new()).unwrap();
        Fixture {
            store: Arc::new(store),
            dir,
            backend: Backend::Sqlite,
        }
    }

    async fn postgres() -> Fixture {
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut suffix).unwrap();
        let schema = format!(
            "latch_test_{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let base = database_url();
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at '{base}' (LATCH_TEST_DATABASE_URL): {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let url = format!("{base} options='-c search_path={schema}'");
        let store = PgStore::connect(&url, CHAIN, &SystemRandom::new())
            .await
            .unwrap();
        Fixture {
            store: Arc::new(store),
            dir: tempfile::tempdir().unwrap(),
            backend: Backend::Postgres { url, schema },
        }
    }

    /// A second handle on the same data, as another process would open it.
    async fn reopen(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite => {
                Arc::new(SqliteStore::open(self.dir.path(), CHAIN, &SystemRandom::new()).unwrap())
            }
            Backend::Postgres { url, .. } => Arc::new(
                PgStore::connect(url, CHAIN, &SystemRandom::new())
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Makes the audit log fail for real: on PostgreSQL a trigger aborts every insert into it
    /// ("disk full"); the embedded store's journal finds bytes after its end that are no batch,
    /// as a failing disk would leave them, and stops. Returns the words the failure names.
    async fn break_the_log(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite => {
                use std::os::unix::fs::FileExt;
                let dir = self.dir.path().join("journal").join(CHAIN);
                let (segment, end) = latch_audit::journal::end(&dir).unwrap();
                let garbage = [b"LBAT".as_slice(), &[1, 0, 0, 0], &[7; 16]].concat();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(segment)
                    .unwrap()
                    .write_all_at(&garbage, end)
                    .unwrap();
                "damaged"
            }
            Backend::Postgres { .. } => {
                self.behind_its_back(
                    "",
                    "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
                     CREATE TRIGGER audit_full BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_full();",
                )
                .await;
                "disk full"
            }
        }
    }

    /// Ends the failure [`Fixture::break_the_log`] made: the trigger goes; the embedded store
    /// is opened again, as after a restart, and its recovery sets the bad bytes aside. Returns
    /// the store to go on with.
    async fn mend_the_log(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite => self.reopen().await,
            Backend::Postgres { .. } => {
                self.behind_its_back("", "DROP TRIGGER audit_full ON audit_log")
                    .await;
                self.store.clone()
            }
        }
    }

    /// Runs SQL on the database behind the store's back: `sqlite` or `postgres`, whichever
    /// this backend speaks.
    async fn behind_its_back(&self, sqlite: &str, postgres: &str) {
        match &self.backend {
            Backend::Sqlite => {
                rusqlite::Connection::open(self.dir.path().join(crate::sqlite::FILE_NAME))
                    .unwrap()
                    .execute_batch(sqlite)
                    .unwrap();
            }
            Backend::Postgres { url, .. } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                // The live store may be indexing what the test just wrote: a change of the
                // tables then deadlocks with it, and PostgreSQL may end either. The batch is one
                // transaction, so it is tried again whole.
                for attempt in 1.. {
                    match client.batch_execute(postgres).await {
                        Ok(()) => break,
                        Err(e)
                            if attempt < 5
                                && e.code()
                                    == Some(
                                        &tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED,
                                    ) => {}
                        Err(e) => panic!("{postgres}: {e}"),
                    }
                }
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Backend::Postgres { schema, .. } = &self.backend else {
            return;
        };
        // Even after a failed assertion: on a thread of its own, with a runtime of its own.
        let drop_schema = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&drop_schema).await;
                }
            });
        })
        .join();
    }
}

/// Runs each named test on both backends: `name::sqlite` and `name::postgres`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::Fixture::sqlite()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::Fixture::postgres().await).await
                }
            }
        )*
    };
}

async fn create(store: &dyn Store, s: &str, k1: &[u8], k2: &[u8]) -> Pepper {
    let pepper = Pepper::from_bytes(&store.key_pepper().await.unwrap());
    let r = resource(s);
    let event = AuditEvent::ResourceCreated {
        resource: r.id.clone(),
    };
    store
        .create_resource(&r, &pepper.digest(k1), &pepper.digest(k2), &draft(event))
        .await
        .unwrap();
    pepper
}

/// Replaces the ISV's Key1 with the key whose digest is `digest`, audited as a regeneration.
async fn regenerate_key1(store: &dyn Store, digest: &KeyDigest) -> crate::Result<()> {
    let event = AuditEvent::KeyRegenerated {
        resource: id(ISV),
        slot: KeySlot::Key1,
    };
    store
        .replace_key(
            &id(ISV),
            KeySlot::Key1,
            digest,
            UnixTime(2_000),
            &draft(event),
        )
        .await
}

/// Lets the ISV issue, with no grants.
async fn enable_isv(store: &dyn Store) {
    let event = AuditEvent::IsvIssuanceChanged {
        resource: id(ISV),
        enabled: true,
        grants: FeatureSet::new(),
    };
    store
        .set_isv(&id(ISV), true, &FeatureSet::new(), &draft(event))
        .await
        .unwrap();
}

/// The resource and slot the cache says `key` belongs to.
async fn owner_of(
    cache: &crate::check_cache::CheckCache,
    pepper: &Pepper,
    key: &[u8],
) -> Option<(String, KeySlot)> {
    cache
        .resource_by_key(&pepper.digest(key))
        .await
        .unwrap()
        .map(|(r, slot, _)| (r.id.as_str().to_owned(), slot))
}

async fn chain_verifies(store: &dyn Store) -> u64 {
    let records = store.audit_records(CHAIN, 0, 100_000).await.unwrap();
    verify_chain(CHAIN, 1, GENESIS, records.iter().map(|r| r.body.as_str())).unwrap();
    records.len() as u64
}

async fn resources_are_found_by_key_digest_and_by_any_spelling(f: Fixture) {
    let store = f.store.clone();
    let pepper = create(store.as_ref(), ISV, b"key-one", b"key-two").await;
    let (r, slot, stored) = store
        .resource_by_key(&pepper.digest(b"key-two"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.id, id(ISV));
    assert_eq!(slot, KeySlot::Key2);
    assert!(pepper.matches(b"key-two", &stored));
    assert!(store
        .resource_by_key(&pepper.digest(b"key-three"))
        .await
        .unwrap()
        .is_none());
    let upper = id(&ISV.to_uppercase());
    assert_eq!(
        store.resource(&upper).await.unwrap().unwrap().id.as_str(),
        ISV
    );
    assert_eq!(store.resources().await.unwrap().len(), 1);
}

async fn a_second_create_under_another_spelling_is_refused_and_not_audited(f: Fixture) {
    let store = f.store.clone();
    create(store.as_ref(), ISV, b"a", b"b").await;
    let before = chain_verifies(store.as_ref()).await;
    let pepper = Pepper::from_bytes(&store.key_pepper().await.unwrap());
    let again = resource(&ISV.to_uppercase());
    let event = AuditEvent::ResourceCreated {
        resource: again.id.clone(),
    };
    let err = store
        .create_resource(
            &again,
            &pepper.digest(b"c"),
            &pepper.digest(b"d"),
            &draft(event),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(chain_verifies(store.as_ref()).await, before);
    assert!(store
        .resource_by_key(&pepper.digest(b"c"))
        .await
        .unwrap()
        .is_none());
}

async fn replacing_one_key_revokes_its_old_value_only(f: Fixture) {
    let store = f.store.clone();
    let pepper = create(store.as_ref(), ISV, b"old-1", b"old-2").await;
    regenerate_key1(store.as_ref(), &pepper.digest(b"new-1"))
        .await
        .unwrap();
    assert!(store
        .resource_by_key(&pepper.digest(b"old-1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .resource_by_key(&pepper.digest(b"new-1"))
            .await
            .unwrap()
            .unwrap()
            .1,
        KeySlot::Key1
    );
    assert_eq!(
        store
            .resource_by_key(&pepper.digest(b"old-2"))
            .await
            .unwrap()
            .unwrap()
            .1,
        KeySlot::Key2
    );
    let keys = store.keys(&id(ISV)).await.unwrap();
    assert_eq!(keys[0].created_at, UnixTime(2_000));
    assert_eq!(keys[1].created_at, UnixTime(1_000));
    assert_eq!(chain_verifies(store.as_ref()).await, 2);
}

async fn isv_grants_approvals_and_blocks(f: Fixture) {
    let store = f.store.clone();
    create(store.as_ref(), ISV, b"a", b"b").await;
    let grants = FeatureSet::parse_csv("Face.Identification,Face.Verification").unwrap();
    let event = AuditEvent::IsvIssuanceChanged {
        resource: id(ISV),
        enabled: true,
        grants: grants.clone(),
    };
    let r = store
        .set_isv(&id(ISV), true, &grants, &draft(event))
        .await
        .unwrap();
    assert!(r.isv_enabled);
    assert_eq!(r.isv_grants, grants);

    let approvals = FeatureSet::parse_csv("Face.Verification").unwrap();
    let event = AuditEvent::ApprovalsChanged {
        resource: id(ISV),
        features: approvals.clone(),
    };
    let r = store
        .set_approvals(&id(ISV), &approvals, &draft(event))
        .await
        .unwrap();
    assert_eq!(r.approvals, approvals);

    let event = AuditEvent::AuthModeChanged {
        resource: id(ISV),
        mode: "token".into(),
    };
    let r = store
        .set_auth_mode(&id(ISV), AuthMode::Token, &draft(event))
        .await
        .unwrap();
    assert_eq!(r.auth_mode, AuthMode::Token);

    assert!(!store
        .is_client_blocked(&id(ISV), &id(CLIENT))
        .await
        .unwrap());
    let event = AuditEvent::ClientBlocked {
        isv: id(ISV),
        client: id(CLIENT),
    };
    store
        .set_client_blocked(
            &id(ISV),
            &id(CLIENT),
            true,
            UnixTime(5),
            &draft(event.clone()),
        )
        .await
        .unwrap();
    // Blocking twice is harmless.
    store
        .set_client_blocked(&id(ISV), &id(CLIENT), true, UnixTime(6), &draft(event))
        .await
        .unwrap();
    assert!(store
        .is_client_blocked(&id(ISV), &id(&CLIENT.to_uppercase()))
        .await
        .unwrap());
    let event = AuditEvent::ClientUnblocked {
        isv: id(ISV),
        client: id(CLIENT),
    };
    store
        .set_client_blocked(&id(ISV), &id(CLIENT), false, UnixTime(7), &draft(event))
        .await
        .unwrap();
    assert!(!store
        .is_client_blocked(&id(ISV), &id(CLIENT))
        .await
        .unwrap());
    assert_eq!(chain_verifies(store.as_ref()).await, 7);
}

async fn changes_to_missing_resources_fail_and_leave_no_record(f: Fixture) {
    let store = f.store.clone();
    let event = AuditEvent::IsvIssuanceChanged {
        resource: id(ISV),
        enabled: true,
        grants: FeatureSet::new(),
    };
    let err = store
        .set_isv(&id(ISV), true, &FeatureSet::new(), &draft(event))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    let event = AuditEvent::KeyRegenerated {
        resource: id(ISV),
        slot: KeySlot::Key2,
    };
    let err = store
        .replace_key(
            &id(ISV),
            KeySlot::Key2,
            &KeyDigest([7; 32]),
            UnixTime(1),
            &draft(event),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    assert!(store.audit_records(CHAIN, 0, 10).await.unwrap().is_empty());
}

async fn signing_keys_are_kept_in_order(f: Fixture) {
    let store = f.store.clone();
    for (kid, t) in [("b", 2), ("a", 1)] {
        let key = StoredSigningKey {
            kid: kid.into(),
            pkcs8: zeroize::Zeroizing::new(vec![1, 2, 3]),
            created_at: UnixTime(t),
            retired_at: None,
        };
        store
            .add_signing_key(
                &key,
                &draft(AuditEvent::SigningKeyCreated { kid: kid.into() }),
            )
            .await
            .unwrap();
    }
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(!format!("{:?}", keys[0]).contains("pkcs8"));
}

async fn the_store_survives_reopening(f: Fixture) {
    let pepper = create(f.store.as_ref(), ISV, b"a", b"b").await;
    let store = f.reopen().await;
    assert_eq!(
        Pepper::from_bytes(&store.key_pepper().await.unwrap()).digest(b"a"),
        pepper.digest(b"a")
    );
    assert!(store
        .resource_by_key(&pepper.digest(b"a"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(chain_verifies(store.as_ref()).await, 1);
}

async fn group_commit_seals_concurrent_records_into_one_chain(f: Fixture) {
    let store = f.store.clone();
    let (log, writer) = AuditLog::spawn(store.clone(), CHAIN);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.record(draft(AuditEvent::AccessTokenRefused {
                    reason: format!("r{i}"),
                    status: 401,
                }))
                .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
    assert_eq!(chain_verifies(store.as_ref()).await, 300);
    let stats = log.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        stats.records.load(std::sync::atomic::Ordering::Relaxed),
        300
    );
    assert!(
        batches < 300,
        "records were grouped: {batches} commits for 300 records"
    );
    drop(log);
    writer.await.unwrap();
}

async fn a_failing_log_refuses_every_waiting_record(f: Fixture) {
    let store = f.store.clone();
    // A real failure, not a mock, of a log that holds a record.
    let (log, _writer) = AuditLog::spawn(store.clone(), CHAIN);
    log.record(draft(AuditEvent::AccessTokenRefused {
        reason: "before".into(),
        status: 401,
    }))
    .await
    .unwrap();
    let failure = f.break_the_log().await;
    let err = log
        .record(draft(AuditEvent::AccessTokenRefused {
            reason: "x".into(),
            status: 401,
        }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(failure), "{err}");
    assert_eq!(
        log.stats()
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A state change whose record cannot be written does not happen either.
    let pepper = Pepper::from_bytes(&store.key_pepper().await.unwrap());
    let r = resource(ISV);
    let event = AuditEvent::ResourceCreated {
        resource: r.id.clone(),
    };
    assert!(store
        .create_resource(
            &r,
            &pepper.digest(b"a"),
            &pepper.digest(b"b"),
            &draft(event)
        )
        .await
        .is_err());
    assert!(store.resource(&r.id).await.unwrap().is_none());
    drop(log);
    let store = f.mend_the_log().await;
    let (log, _writer) = AuditLog::spawn(store, CHAIN);
    assert_eq!(
        log.record(draft(AuditEvent::AccessTokenRefused {
            reason: "y".into(),
            status: 401
        }))
        .await
        .unwrap(),
        2
    );
}

async fn revocations_by_token_target_and_isv(f: Fixture) {
    let store = f.store.clone();
    let (isv, client, other) = (
        id(ISV),
        id(CLIENT),
        id(&ISV.replace("isv-face", "other-isv")),
    );
    let revoked = |jti: &'static str, isv: &ResourceId, iat: i64| {
        let (store, isv, client) = (store.clone(), isv.clone(), client.clone());
        async move {
            store
                .is_revoked(jti, &isv, &client, UnixTime(iat))
                .await
                .unwrap()
        }
    };
    assert!(!revoked("j1", &isv, 100).await);

    let event = AuditEvent::TokensRevoked {
        scope: "jti".into(),
        subject: "j1".into(),
        before: None,
    };
    store
        .add_revocation(
            &Revocation::Token {
                jti: "j1".into(),
                expires: UnixTime(5_000),
            },
            &draft(event),
        )
        .await
        .unwrap();
    assert!(revoked("j1", &isv, 100).await);
    assert!(!revoked("j2", &isv, 100).await);

    let event = AuditEvent::TokensRevoked {
        scope: "target".into(),
        subject: client.canonical().into(),
        before: Some(UnixTime(200)),
    };
    let upper = id(&CLIENT.to_uppercase());
    store
        .add_revocation(
            &Revocation::TargetBefore {
                target: upper,
                before: UnixTime(200),
            },
            &draft(event.clone()),
        )
        .await
        .unwrap();
    assert!(revoked("j3", &isv, 199).await, "issued before T");
    assert!(!revoked("j3", &isv, 200).await, "issued at or after T");
    // An earlier T does not narrow a later one.
    store
        .add_revocation(
            &Revocation::TargetBefore {
                target: client.clone(),
                before: UnixTime(150),
            },
            &draft(event),
        )
        .await
        .unwrap();
    assert!(revoked("j3", &isv, 199).await);

    let event = AuditEvent::TokensRevoked {
        scope: "isv".into(),
        subject: other.canonical().into(),
        before: Some(UnixTime(1_000)),
    };
    store
        .add_revocation(
            &Revocation::IsvBefore {
                isv: other.clone(),
                before: UnixTime(1_000),
            },
            &draft(event),
        )
        .await
        .unwrap();
    assert!(revoked("j4", &other, 999).await);
    assert!(
        !revoked("j4", &isv, 999).await,
        "another ISV's tokens are untouched"
    );
    assert_eq!(chain_verifies(store.as_ref()).await, 4);
}

async fn revocations_expire_with_the_tokens_they_cover(f: Fixture) {
    let store = f.store.clone();
    let event = AuditEvent::TokensRevoked {
        scope: "jti".into(),
        subject: "j1".into(),
        before: None,
    };
    store
        .add_revocation(
            &Revocation::Token {
                jti: "j1".into(),
                expires: UnixTime(5_000),
            },
            &draft(event),
        )
        .await
        .unwrap();
    let event = AuditEvent::TokensRevoked {
        scope: "target".into(),
        subject: id(CLIENT).canonical().into(),
        before: Some(UnixTime(100)),
    };
    store
        .add_revocation(
            &Revocation::TargetBefore {
                target: id(CLIENT),
                before: UnixTime(100),
            },
            &draft(event),
        )
        .await
        .unwrap();
    // The jti entry covers a token valid until 5000 (plus the largest leeway).
    assert_eq!(store.prune_revocations(UnixTime(5_059)).await.unwrap(), 0);
    assert_eq!(store.prune_revocations(UnixTime(5_060)).await.unwrap(), 1);
    assert!(!store
        .is_revoked("j1", &id(ISV), &id(CLIENT), UnixTime(200))
        .await
        .unwrap());
    // The target entry covers tokens issued before 100, valid at most until 100 + 86400 + 60.
    assert!(store
        .is_revoked("j2", &id(ISV), &id(CLIENT), UnixTime(99))
        .await
        .unwrap());
    assert_eq!(
        store
            .prune_revocations(UnixTime(100 + 86_460 - 1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_revocations(UnixTime(100 + 86_460))
            .await
            .unwrap(),
        1
    );
}

async fn an_isv_scoped_revocation_leaves_other_isvs_alone(f: Fixture) {
    let store = f.store.clone();
    let other = id(&ISV.replace("isv-face", "other-isv"));
    let event = AuditEvent::TokensRevoked {
        scope: "isv_target".into(),
        subject: "x".into(),
        before: Some(UnixTime(100)),
    };
    let r = Revocation::IsvTargetBefore {
        isv: id(ISV),
        target: id(CLIENT),
        before: UnixTime(100),
    };
    store.add_revocation(&r, &draft(event)).await.unwrap();
    assert!(store
        .is_revoked("j", &id(ISV), &id(&CLIENT.to_uppercase()), UnixTime(99))
        .await
        .unwrap());
    assert!(!store
        .is_revoked("j", &other, &id(CLIENT), UnixTime(99))
        .await
        .unwrap());
    assert!(!store
        .is_revoked("j", &id(ISV), &id(CLIENT), UnixTime(100))
        .await
        .unwrap());
}

async fn admin_credentials_rotation_and_issuers(f: Fixture) {
    let store = f.store.clone();
    use crate::AdminRole;
    assert!(store
        .admin_credential(AdminRole::Operator)
        .await
        .unwrap()
        .is_none());
    let event = AuditEvent::AdminCredentialSet {
        role: "operator".into(),
    };
    store
        .set_admin_credential(
            AdminRole::Operator,
            &KeyDigest([1; 32]),
            &draft(event.clone()),
        )
        .await
        .unwrap();
    store
        .set_admin_credential(AdminRole::Operator, &KeyDigest([2; 32]), &draft(event))
        .await
        .unwrap();
    assert_eq!(
        store.admin_credential(AdminRole::Operator).await.unwrap(),
        Some(KeyDigest([2; 32]))
    );
    assert!(store
        .admin_credential(AdminRole::Auditor)
        .await
        .unwrap()
        .is_none());

    let key = |kid: &str, t: i64| StoredSigningKey {
        kid: kid.into(),
        pkcs8: zeroize::Zeroizing::new(vec![1]),
        created_at: UnixTime(t),
        retired_at: None,
    };
    store
        .add_signing_key(
            &key("a", 1),
            &draft(AuditEvent::SigningKeyCreated { kid: "a".into() }),
        )
        .await
        .unwrap();
    let event = AuditEvent::SigningKeyRotated {
        kid: "b".into(),
        retired: vec!["a".into()],
    };
    store
        .rotate_signing_key(&key("b", 2), UnixTime(2), &draft(event))
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        (keys[0].kid.as_str(), keys[0].retired_at),
        ("a", Some(UnixTime(2)))
    );
    assert_eq!((keys[1].kid.as_str(), keys[1].retired_at), ("b", None));

    let issued = AuditEvent::LimitedAccessTokenIssued {
        isv: id(ISV),
        target: id(CLIENT),
        features: FeatureSet::parse_csv("Face.Identification").unwrap(),
        lifetime_secs: 60,
        expires: UnixTime(60),
        jti: "jti-1".into(),
        fingerprint: "f".into(),
        kid: "b".into(),
    };
    store.append_audit(CHAIN, &[draft(issued)]).await.unwrap();
    assert_eq!(
        store.issuer_of("jti-1").await.unwrap().as_deref(),
        Some(id(ISV).canonical())
    );
    assert_eq!(store.issuer_of("jti-2").await.unwrap(), None);
    chain_verifies(store.as_ref()).await;
}

async fn an_export_verifies_offline_and_queries_filter_and_page(f: Fixture) {
    use latch_core::checkpoint::verify_export;
    use latch_core::FixedClock;
    let store = f.store.clone();
    let rng = SystemRandom::new();
    let clock = FixedClock::at(UnixTime(5_000));
    let key = latch_audit::signer::AuditSigner::open(f.dir.path(), store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    let again = latch_audit::signer::AuditSigner::open(f.dir.path(), store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    assert_eq!(key.key().kid(), again.key().kid(), "made once");
    let issued = |jti: &str, target: &str, flags: &str, t: i64| AuditDraft {
        time: UnixTime(t),
        request_id: None,
        actor: Actor::System,
        event: AuditEvent::LimitedAccessTokenIssued {
            isv: id(ISV),
            target: id(target),
            features: FeatureSet::parse_csv(flags).unwrap(),
            lifetime_secs: 60,
            expires: UnixTime(t + 60),
            jti: jti.into(),
            fingerprint: "f".into(),
            kid: "k".into(),
        },
    };
    let other = ISV.replace("isv-face", "someone");
    store
        .append_audit(
            CHAIN,
            &[
                issued("a", CLIENT, "Face.Identification", 100),
                issued("b", CLIENT, "Face.Verification", 200),
                issued("c", &other, "Face.Identification", 300),
                issued("d", CLIENT, "Face.Identification,Face.Verification", 400),
            ],
        )
        .await
        .unwrap();
    latch_audit::signer::checkpoint(store.as_ref(), &key, CHAIN, &rng, &clock)
        .await
        .unwrap();
    store
        .append_audit(CHAIN, &[issued("e", CLIENT, "Face.Identification", 500)])
        .await
        .unwrap();

    let mut lines: Vec<String> = Vec::new();
    latch_audit::export::export(store.as_ref(), &key, None, &rng, &clock, &mut lines)
        .await
        .unwrap();
    // 5 records, the key-creation record before them... all records of the chain, then 2 checkpoints.
    let report = verify_export(&lines, &[key.key().public_key()], None, |_| {});
    assert_eq!(report.findings, [], "{lines:?}");
    assert_eq!(report.checkpoints, 2);

    let q = |f: &dyn Fn(&mut latch_audit::AuditQuery)| {
        let mut q = latch_audit::AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let jtis = |records: &[latch_audit::StoredAuditRecord]| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .filter_map(|v| v["event"]["jti"].as_str().map(str::to_owned))
            .collect()
    };
    let (r, _) = store
        .query_audit(&q(&|q| q.target = Some(id(CLIENT))))
        .await
        .unwrap();
    assert_eq!(jtis(&r), ["a", "b", "d", "e"]);
    let (r, _) = store
        .query_audit(&q(&|q| {
            q.target = Some(id(&CLIENT.to_uppercase()));
            q.from = Some(UnixTime(200));
            q.to = Some(UnixTime(500));
        }))
        .await
        .unwrap();
    assert_eq!(
        jtis(&r),
        ["b", "d"],
        "time range: from inclusive, to exclusive"
    );
    let (r, _) = store
        .query_audit(&q(&|q| {
            q.feature = Some(latch_core::Feature::FaceVerification)
        }))
        .await
        .unwrap();
    assert_eq!(jtis(&r), ["b", "d"]);
    let (r, _) = store
        .query_audit(&q(&|q| q.jti = Some("c".into())))
        .await
        .unwrap();
    assert_eq!(jtis(&r), ["c"]);
    // Pages of two.
    let (page, next) = store
        .query_audit(&q(&|q| {
            q.kind = Some("limited_access_token_issued".into());
            q.limit = 2;
        }))
        .await
        .unwrap();
    assert_eq!(jtis(&page), ["a", "b"]);
    let (page, next) = store
        .query_audit(&q(&|q| {
            q.kind = Some("limited_access_token_issued".into());
            q.limit = 2;
            q.after = next;
        }))
        .await
        .unwrap();
    assert_eq!(jtis(&page), ["c", "d"]);
    let (page, next) = store
        .query_audit(&q(&|q| {
            q.kind = Some("limited_access_token_issued".into());
            q.limit = 2;
            q.after = next;
        }))
        .await
        .unwrap();
    assert_eq!((jtis(&page), next), (vec!["e".to_owned()], None));
}

async fn checkpoints_come_every_n_records_or_t_seconds_even_when_idle(f: Fixture) {
    use latch_core::FixedClock;
    let store = f.store.clone();
    let rng = SystemRandom::new();
    let clock = FixedClock::at(UnixTime(0));
    let key = latch_audit::signer::AuditSigner::open(f.dir.path(), store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    let mut policy = latch_audit::signer::CheckpointPolicy::new(3, 60);
    assert!(
        policy
            .tick(store.as_ref(), &key, CHAIN, &rng, &clock)
            .await
            .unwrap()
            .is_some(),
        "the first is due at once"
    );
    assert!(policy
        .tick(store.as_ref(), &key, CHAIN, &rng, &clock)
        .await
        .unwrap()
        .is_none());
    let refused = || {
        draft(AuditEvent::AccessTokenRefused {
            reason: "x".into(),
            status: 401,
        })
    };
    store
        .append_audit(CHAIN, &[refused(), refused()])
        .await
        .unwrap();
    assert!(
        policy
            .tick(store.as_ref(), &key, CHAIN, &rng, &clock)
            .await
            .unwrap()
            .is_none(),
        "two records: not yet"
    );
    store.append_audit(CHAIN, &[refused()]).await.unwrap();
    let cp = policy
        .tick(store.as_ref(), &key, CHAIN, &rng, &clock)
        .await
        .unwrap()
        .unwrap();
    assert!(cp.verify(&key.key().public_key()));
    clock.set(UnixTime(59));
    assert!(policy
        .tick(store.as_ref(), &key, CHAIN, &rng, &clock)
        .await
        .unwrap()
        .is_none());
    clock.set(UnixTime(cp.time.0 + 60));
    let idle = policy
        .tick(store.as_ref(), &key, CHAIN, &rng, &clock)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (idle.size, idle.root.clone()),
        (cp.size, cp.root.clone()),
        "idle: same size and root, a newer time"
    );
    assert_eq!(store.checkpoints(CHAIN).await.unwrap().len(), 3);
}

async fn archived_records_leave_the_store_and_everything_still_verifies(f: Fixture) {
    use latch_core::checkpoint::{verify_export, Finding};
    use latch_core::FixedClock;
    let store = f.store.clone();
    let rng = SystemRandom::new();
    let clock = FixedClock::at(UnixTime(1_000));
    let key = latch_audit::signer::AuditSigner::open(f.dir.path(), store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    // Record 1 is the audit key's creation, at 1000; then records at 2001..=2010.
    refusals_from_2001(store.as_ref(), 10).await;
    latch_audit::signer::checkpoint(store.as_ref(), &key, CHAIN, &rng, &clock)
        .await
        .unwrap();
    let pk = key.key().public_key();
    let verify = |parts: &[&Vec<String>]| {
        let all: Vec<String> = parts.iter().flat_map(|p| p.iter().cloned()).collect();
        verify_export(&all, std::slice::from_ref(&pk), None, |_| {}).findings
    };

    let mut first: Vec<String> = Vec::new();
    let cp = archive_before(store.as_ref(), &key, 2_006, &mut first)
        .await
        .unwrap();
    assert_eq!(cp.size, 6, "records 1..=6 are older than 2006");
    assert_eq!(verify(&[&first]), [], "an archive verifies on its own");
    assert_eq!(
        store.audit_records(CHAIN, 0, 100).await.unwrap()[0].seq,
        7,
        "and left the store"
    );

    let mut current: Vec<String> = Vec::new();
    latch_audit::export::export(store.as_ref(), &key, None, &rng, &clock, &mut current)
        .await
        .unwrap();
    assert_eq!(
        verify(&[&first, &current]),
        [],
        "archive and export verify together"
    );
    assert!(verify(&[&current]).contains(&Finding::Missing {
        chain: CHAIN.into(),
        from: 1,
        to: 6
    }));

    // A second archive continues where the first ended.
    let mut second: Vec<String> = Vec::new();
    let cp = archive_before(store.as_ref(), &key, 2_009, &mut second)
        .await
        .unwrap();
    assert_eq!(cp.size, 9);
    let mut current: Vec<String> = Vec::new();
    latch_audit::export::export(store.as_ref(), &key, None, &rng, &clock, &mut current)
        .await
        .unwrap();
    assert_eq!(verify(&[&first, &second, &current]), []);
    // Nothing old enough: nothing happens; the newest record is never archived.
    let mut none: Vec<String> = Vec::new();
    assert!(archive_before(store.as_ref(), &key, 2_009, &mut none)
        .await
        .is_none());
    let mut all: Vec<String> = Vec::new();
    let head = store.audit_head(CHAIN).await.unwrap();
    archive_before(store.as_ref(), &key, i64::MAX, &mut all).await;
    assert!(
        store.audit_head(CHAIN).await.unwrap() > head,
        "the last record stays, and the archiving is recorded"
    );
}

async fn a_log_cut_or_altered_under_its_signed_head_is_not_signed_again(f: Fixture) {
    use latch_core::FixedClock;
    let store = f.store.clone();
    let dir = &f.dir;
    let rng = SystemRandom::new();
    let clock = FixedClock::at(UnixTime(1_000));
    let signer = latch_audit::signer::AuditSigner::open(dir.path(), store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    if matches!(f.backend, Backend::Sqlite) {
        assert!(
            !std::fs::read(dir.path().join(crate::sqlite::FILE_NAME))
                .unwrap()
                .windows(20)
                .any(|w| signer.key().pkcs8().windows(20).next() == Some(w)),
            "the audit key is not in the database"
        );
    }
    let refused = |r: &str| {
        draft(AuditEvent::AccessTokenRefused {
            reason: r.into(),
            status: 401,
        })
    };
    store
        .append_audit(CHAIN, &[refused("a"), refused("b"), refused("c")])
        .await
        .unwrap();
    latch_audit::signer::checkpoint(store.as_ref(), &signer, CHAIN, &rng, &clock)
        .await
        .unwrap();
    edits_of_the_log_or_its_index_are_found(&f, &signer).await;
}

/// On PostgreSQL the index is built behind the writers, by any replica, while another may be
/// archiving: an indexing that read records an archiving then removed must not leave their
/// rows in the index (a query would then find a row whose record is gone). Many rounds of the
/// two at once, each followed by a query over everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_archive_racing_the_indexer_leaves_no_row_behind() {
    let f = Fixture::postgres().await;
    let (store, other) = (f.store.clone(), f.reopen().await);
    let mut archived = 0;
    for round in 0..40u64 {
        let drafts: Vec<AuditDraft> = (0..20)
            .map(|i| {
                draft(AuditEvent::AccessTokenRefused {
                    reason: format!("r{round}-{i}"),
                    status: 401,
                })
            })
            .collect();
        store.append_audit(CHAIN, &drafts).await.unwrap();
        let through = archived + 15;
        let note = draft(AuditEvent::AuditArchived {
            chain: CHAIN.into(),
            through_seq: through,
            root: "r".into(),
        });
        let indexing = {
            let other = other.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    other.index_audit().await.unwrap();
                }
            })
        };
        store
            .archive_audit(CHAIN, archived, through, &[0; 8], &note)
            .await
            .unwrap();
        indexing.await.unwrap();
        archived = through;
        let mut query = latch_audit::AuditQuery {
            limit: 1000,
            ..latch_audit::AuditQuery::default()
        };
        query.chain = Some(CHAIN.into());
        let (found, _) = store.query_audit(&query).await.unwrap();
        assert!(
            found.iter().all(|r| r.seq > through),
            "round {round}: a record archived through {through} is still indexed"
        );
    }
}

/// On PostgreSQL, where someone with the database can delete or insert rows of the log: the
/// newest record removed, or put back with other content, is found by the next checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_log_cut_or_refilled_behind_the_writer_is_not_signed() {
    use latch_core::FixedClock;
    let f = Fixture::postgres().await;
    let store = f.store.clone();
    let rng = SystemRandom::new();
    let clock = FixedClock::at(UnixTime(1_000));
    let signer = latch_audit::signer::AuditSigner::open(f.dir.path(), store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    refusals_from_2001(store.as_ref(), 3).await;
    latch_audit::signer::checkpoint(store.as_ref(), &signer, CHAIN, &rng, &clock)
        .await
        .unwrap();

    // Someone with the database deletes the newest record and the checkpoint rows.
    let cut = "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log); DELETE FROM checkpoints;";
    f.behind_its_back(cut, cut).await;
    let err = latch_audit::signer::checkpoint(store.as_ref(), &signer, CHAIN, &rng, &clock)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the log now ends at record 3, after 4 were written"),
        "{err}"
    );
    let mut lines: Vec<String> = Vec::new();
    assert!(
        latch_audit::export::export(store.as_ref(), &signer, None, &rng, &clock, &mut lines)
            .await
            .is_err(),
        "no export signs the cut log"
    );

    // ...or puts back a record of the same number with other content.
    let records = store.audit_records(CHAIN, 0, 100).await.unwrap();
    let last = records.last().unwrap();
    let mut forged: latch_core::audit::SealedRecord = serde_json::from_str(&last.body).unwrap();
    forged.seq += 1;
    forged.prev_hash = latch_core::jws::b64url(last.hash);
    let body = serde_json::to_string(&forged).unwrap();
    let insert = format!(
        "INSERT INTO audit_log (chain, seq, body) VALUES ('{CHAIN}', {}, '{}')",
        forged.seq,
        body.replace('\'', "''"),
    );
    f.behind_its_back(&insert, &insert).await;
    let err = latch_audit::signer::checkpoint(store.as_ref(), &signer, CHAIN, &rng, &clock)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("record 4 is not the one its head names"),
        "{err}"
    );
}

/// Proofs are made from the leaves in the index and subtrees kept every eighth height: the
/// same proofs as from every leaf, and nothing stored is trusted by whoever checks them.
async fn proofs_come_from_stored_subtrees_and_match_the_leaves(f: Fixture) {
    use latch_core::merkle;
    let store = f.store.as_ref();
    for batch in 0..6 {
        let drafts: Vec<AuditDraft> = (0..100)
            .map(|i| {
                draft(AuditEvent::AccessTokenRefused {
                    reason: format!("r{batch}-{i}"),
                    status: 401,
                })
            })
            .collect();
        store.append_audit(CHAIN, &drafts).await.unwrap();
    }
    let leaves = store.audit_leaves(CHAIN).await.unwrap();
    let n = leaves.len() as u64;
    assert_eq!(n, 600);
    for m in [1, 2, 255, 256, 257, 300, 511, 512, 513, 599, 600] {
        let p = latch_audit::proofs::consistency(store, CHAIN, m, n)
            .await
            .unwrap();
        assert_eq!(p.first_root, merkle::root(&leaves[..m as usize]), "m={m}");
        assert_eq!(p.second_root, merkle::root(&leaves), "m={m}");
        assert_eq!(
            p.proof,
            merkle::consistency_proof(m as usize, &leaves),
            "m={m}"
        );
    }
    for seq in [1, 256, 257, 400, 600] {
        let p = latch_audit::proofs::inclusion(store, CHAIN, seq, n)
            .await
            .unwrap();
        assert_eq!(p.leaf, leaves[seq as usize - 1]);
        assert!(merkle::verify_inclusion(
            seq - 1,
            n,
            &p.leaf,
            &merkle::root(&leaves),
            &p.proof
        ));
    }
    // The two complete subtrees of height 8 are kept; nothing beyond the records.
    let kept = store.audit_subtrees(CHAIN, 8, 0, 10).await.unwrap();
    assert_eq!(kept.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(kept[0].1, merkle::root(&leaves[..256]));
    let refused = latch_audit::proofs::consistency(store, CHAIN, 1, n + 1).await;
    assert!(
        matches!(refused, Err(latch_audit::AuditError::Refused(_))),
        "{refused:?}"
    );

    // A kept subtree altered in the database gives proofs that do not verify.
    let edit = "UPDATE audit_tree SET hash = zeroblob(32) WHERE height = 8 AND idx = 0";
    f.behind_its_back(
        edit,
        "UPDATE audit_tree SET hash = decode(repeat('00', 32), 'hex') WHERE height = 8 AND idx = 0",
    )
    .await;
    let p = latch_audit::proofs::consistency(store, CHAIN, 300, n)
        .await
        .unwrap();
    assert!(!merkle::verify_consistency(
        300,
        n,
        &merkle::root(&leaves[..300]),
        &merkle::root(&leaves),
        &p.proof
    ));
}

/// Refusal records at times 2001, 2002, ..., one append each.
async fn refusals_from_2001(store: &dyn Store, n: i64) {
    for t in 1..=n {
        let mut d = draft(AuditEvent::AccessTokenRefused {
            reason: format!("r{t}"),
            status: 401,
        });
        d.time = UnixTime(2_000 + t);
        store.append_audit(CHAIN, &[d]).await.unwrap();
    }
}

/// Archives the records of the chain older than `before` into `out` (as the operator does);
/// the archive's checkpoint, if anything was old enough.
async fn archive_before(
    store: &dyn Store,
    key: &latch_audit::signer::AuditSigner,
    before: i64,
    out: &mut Vec<String>,
) -> Option<latch_core::checkpoint::Checkpoint> {
    latch_audit::export::archive(
        store,
        key,
        &latch_audit::export::Archive {
            chain: CHAIN,
            before: UnixTime(before),
            actor: Actor::LocalOperator,
        },
        &SystemRandom::new(),
        &latch_core::FixedClock::at(UnixTime(1_000)),
        out,
    )
    .await
    .unwrap()
}

/// The first page of every record, as a query gives it.
async fn first_page(
    store: &dyn Store,
) -> latch_audit::Result<(Vec<latch_audit::StoredAuditRecord>, Option<i64>)> {
    store
        .query_audit(&latch_audit::AuditQuery {
            limit: 10,
            ..latch_audit::AuditQuery::default()
        })
        .await
}

/// Both stores keep the chain apart from its index (the embedded one in a journal, PostgreSQL
/// in a table with nothing but its key): what someone with the files or the database can do
/// to either, and where it is found.
async fn edits_of_the_log_or_its_index_are_found(
    f: &Fixture,
    signer: &latch_audit::signer::AuditSigner,
) {
    use latch_core::FixedClock;
    let (store, rng, clock) = (
        f.store.clone(),
        SystemRandom::new(),
        FixedClock::at(UnixTime(2_000)),
    );
    let checkpoint =
        || latch_audit::signer::checkpoint(store.as_ref(), signer, CHAIN, &rng, &clock);
    let refused = |r: &str| {
        draft(AuditEvent::AccessTokenRefused {
            reason: r.into(),
            status: 401,
        })
    };

    // Deleting the newest index row removes nothing from the log: the index is rebuilt.
    let cut = "DELETE FROM audit_index WHERE seq = (SELECT max(seq) FROM audit_index); DELETE FROM checkpoints;";
    f.behind_its_back(cut, cut).await;
    assert_eq!(checkpoint().await.unwrap().size, 4);
    assert_eq!(chain_verifies(store.as_ref()).await, 4);

    // An index row that says something else than its record is found by the next checkpoint.
    store
        .append_audit(CHAIN, &[refused("d"), refused("e")])
        .await
        .unwrap();
    assert_eq!(store.audit_head(CHAIN).await.unwrap(), 6);
    // A query sees every record durable when it started: the index holds 5 and 6 after it.
    let (found, _) = first_page(store.as_ref()).await.unwrap();
    assert_eq!(found.len(), 6);
    let edit = "UPDATE audit_index SET time = time + 1 WHERE seq = 5";
    f.behind_its_back(edit, edit).await;
    // ...and by any query that returns its record.
    let err = first_page(store.as_ref()).await.unwrap_err();
    assert!(
        err.to_string().contains("record 5: the index row differs"),
        "{err}"
    );
    let err = checkpoint().await.unwrap_err();
    assert!(
        err.to_string().contains("record 5: the index row differs"),
        "{err}"
    );
    // The index is rebuilt from the journal, and says what the records say again.
    assert_eq!(store.reindex_audit().await.unwrap(), 6);
    assert_eq!(checkpoint().await.unwrap().size, 6);

    // An index row with no record behind it stops every query of the log.
    let forged = "INSERT INTO audit_index (chain, seq, time, kind, outcome, leaf) SELECT chain, 7, time, kind, outcome, leaf FROM audit_index WHERE seq = 6";
    f.behind_its_back(forged, forged).await;
    let err = first_page(store.as_ref()).await.unwrap_err().to_string();
    assert!(
        err.contains("index holds record 7, the") && err.contains("ends at 6"),
        "{err}"
    );
    let gone = "DELETE FROM audit_index WHERE seq = 7";
    f.behind_its_back(gone, gone).await;

    // A record changed in the log itself is found by the next checkpoint: the journal's
    // checksums name the batch it is in; PostgreSQL's records since the last checkpoint are
    // hashed again.
    store
        .append_audit(CHAIN, &[refused("f"), refused("g")])
        .await
        .unwrap();
    // Indexed first: the records and their rows are both there to compare.
    assert_eq!(first_page(store.as_ref()).await.unwrap().0.len(), 8);
    let found = match f.backend {
        Backend::Sqlite => {
            let (segment, end) =
                latch_audit::journal::end(&f.dir.path().join("journal").join(CHAIN)).unwrap();
            let mut bytes = std::fs::read(&segment).unwrap();
            bytes[usize::try_from(end).unwrap() - 5] ^= 0x01;
            std::fs::write(&segment, &bytes).unwrap();
            ["damaged", "record 7"]
        }
        Backend::Postgres { .. } => {
            // The body stays a valid record, with its link; only its reason changed.
            f.behind_its_back(
                "",
                r#"UPDATE audit_log SET body = replace(body, '"reason":"f"', '"reason":"x"') WHERE seq = 7"#,
            )
            .await;
            ["record 7: the index row differs", "record 7"]
        }
    };
    let err = checkpoint().await.unwrap_err().to_string();
    assert!(found.iter().all(|w| err.contains(w)), "{err}");
    if let Backend::Postgres { .. } = f.backend {
        // Nor is an index made again over it: the next record no longer links to it.
        let err = store.reindex_audit().await.unwrap_err().to_string();
        assert!(
            err.contains("record 8: its previous-hash link is broken"),
            "{err}"
        );
        // The index is left as it was, and still names the edited record to a query.
        let err = first_page(store.as_ref()).await.unwrap_err().to_string();
        assert!(err.contains("record 7: the index row differs"), "{err}");
    }
}

async fn an_archiving_that_lost_a_race_removes_nothing(f: Fixture) {
    let store = f.store.clone();
    let refused = |r: &str| {
        draft(AuditEvent::AccessTokenRefused {
            reason: r.into(),
            status: 401,
        })
    };
    store
        .append_audit(CHAIN, &[refused("a"), refused("b"), refused("c")])
        .await
        .unwrap();
    let note = |n: u64| {
        draft(AuditEvent::AuditArchived {
            chain: CHAIN.into(),
            through_seq: n,
            root: "r".into(),
        })
    };
    // Someone else archived through 1 meanwhile: a run that read "nothing archived" must fail.
    store
        .archive_audit(CHAIN, 0, 1, &[0; 8], &note(1))
        .await
        .unwrap();
    let err = store
        .archive_audit(CHAIN, 0, 2, &[0; 8], &note(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another archiving"), "{err}");
    assert_eq!(
        store.audit_records(CHAIN, 0, 10).await.unwrap()[0].seq,
        2,
        "record 2 is still there"
    );
}

async fn a_spooled_writer_keeps_records_through_an_outage(f: Fixture) {
    let store = f.store.clone();
    let spool = f.dir.path().join("spool.jsonl");
    let (log, writer) = AuditLog::spawn_spooled(
        store.clone(),
        CHAIN,
        latch_audit::writer::Spool::at(spool.clone()),
    );
    let used = |r: &str| {
        draft(AuditEvent::AccessTokenRefused {
            reason: r.into(),
            status: 401,
        })
    };
    assert_eq!(log.record(used("before")).await.unwrap(), 1);
    f.behind_its_back(
        "",
        "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
         CREATE TRIGGER audit_full BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_full();",
    )
    .await;
    // The store refuses: the records are kept on disk, and the callers are answered.
    assert_eq!(log.record(used("during 1")).await.unwrap(), 0);
    assert_eq!(log.record(used("during 2")).await.unwrap(), 0);
    assert_eq!(std::fs::read_to_string(&spool).unwrap().lines().count(), 2);
    assert_eq!(chain_verifies(store.as_ref()).await, 1);
    f.behind_its_back("", "DROP TRIGGER audit_full ON audit_log")
        .await;
    // Back: the spooled records enter the chain first, in order, then the new one.
    assert_eq!(log.record(used("after")).await.unwrap(), 4);
    assert_eq!(std::fs::read_to_string(&spool).unwrap(), "");
    let reasons: Vec<String> = store
        .audit_records(CHAIN, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let record: latch_core::audit::SealedRecord = serde_json::from_str(&r.body).unwrap();
            match record.event {
                AuditEvent::AccessTokenRefused { reason, .. } => reason,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(reasons, ["before", "during 1", "during 2", "after"]);
    assert_eq!(chain_verifies(store.as_ref()).await, 4);
    drop(log);
    writer.await.unwrap();
}

fn revoke_jti(jti: &str) -> (Revocation, AuditDraft) {
    (
        Revocation::Token {
            jti: jti.into(),
            expires: UnixTime(5_000),
        },
        draft(AuditEvent::TokensRevoked {
            scope: "jti".into(),
            subject: jti.into(),
            before: None,
        }),
    )
}

fn block(blocked: bool) -> AuditDraft {
    draft(if blocked {
        AuditEvent::ClientBlocked {
            isv: id(ISV),
            client: id(CLIENT),
        }
    } else {
        AuditEvent::ClientUnblocked {
            isv: id(ISV),
            client: id(CLIENT),
        }
    })
}

async fn the_state_version_moves_with_every_checked_change_and_with_nothing_else(f: Fixture) {
    let store = f.store.clone();
    let other = f.reopen().await;
    let v0 = store.state_version().await.unwrap();
    let moved = |before: u64| {
        let store = store.clone();
        async move {
            let now = store.state_version().await.unwrap();
            assert!(now > before, "{now} after {before}");
            now
        }
    };

    // Audit records, checkpoints and reads are not state the checks read.
    store
        .record(&draft(AuditEvent::AccessTokenRefused {
            reason: "x".into(),
            status: 401,
        }))
        .await
        .unwrap();
    let pepper = Pepper::from_bytes(&store.key_pepper().await.unwrap());
    assert!(store
        .resource_by_key(&pepper.digest(b"k"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.state_version().await.unwrap(), v0);
    assert_eq!(store.changes_here(), 0);

    create(store.as_ref(), ISV, b"a", b"b").await;
    let v = moved(v0).await;
    assert_eq!(store.changes_here(), 1);
    regenerate_key1(store.as_ref(), &pepper.digest(b"c"))
        .await
        .unwrap();
    let v = moved(v).await;
    store
        .set_client_blocked(&id(ISV), &id(CLIENT), true, UnixTime(3), &block(true))
        .await
        .unwrap();
    let v = moved(v).await;
    let (revocation, audit) = revoke_jti("j1");
    store.add_revocation(&revocation, &audit).await.unwrap();
    let v = moved(v).await;
    assert_eq!(store.changes_here(), 4);

    // Another handle's change moves the version too, but not this handle's count.
    enable_isv(other.as_ref()).await;
    let v = moved(v).await;
    assert_eq!(store.changes_here(), 4);
    assert_eq!(other.changes_here(), 1);

    // Pruning that removes nothing changes nothing.
    assert_eq!(store.prune_revocations(UnixTime(1)).await.unwrap(), 0);
    assert_eq!(store.state_version().await.unwrap(), v);

    // A change that goes around the program altogether moves it too.
    f.behind_its_back(
        "UPDATE resources SET approvals = 'Face.Verification'",
        "UPDATE resources SET approvals = 'Face.Verification'",
    )
    .await;
    moved(v).await;
}

async fn the_check_cache_sees_changes_made_here_at_once_and_elsewhere_at_its_next_reading(
    f: Fixture,
) {
    use crate::check_cache::CheckCache;
    use std::time::Duration;

    let store = f.store.clone();
    let other = f.reopen().await;
    let pepper = create(store.as_ref(), ISV, b"key-1", b"key-2").await;
    // Reads the version once an hour, so only this handle's own changes make it forget.
    let lazy = CheckCache::new(store.clone(), Duration::from_secs(3600));
    // Reads it on every call.
    let exact = CheckCache::new(store.clone(), Duration::ZERO);
    assert_eq!(
        owner_of(&lazy, &pepper, b"key-1").await,
        Some((ISV.to_owned(), KeySlot::Key1))
    );
    assert_eq!(
        owner_of(&exact, &pepper, b"key-1").await,
        Some((ISV.to_owned(), KeySlot::Key1))
    );
    assert!(!lazy.is_client_blocked(&id(ISV), &id(CLIENT)).await.unwrap());
    assert!(!exact
        .is_revoked("j1", &id(ISV), &id(CLIENT), UnixTime(1))
        .await
        .unwrap());
    assert!(!lazy
        .is_revoked("j1", &id(ISV), &id(CLIENT), UnixTime(1))
        .await
        .unwrap());

    // Key1 regenerated by another process: the exact cache refuses it on its next call; the
    // lazy one still answers from memory, as its hour allows.
    regenerate_key1(other.as_ref(), &pepper.digest(b"key-1-new"))
        .await
        .unwrap();
    assert_eq!(owner_of(&exact, &pepper, b"key-1").await, None);
    assert_eq!(
        owner_of(&lazy, &pepper, b"key-1").await,
        Some((ISV.to_owned(), KeySlot::Key1))
    );

    // A change through this handle: both see it on the very next call, and forget everything
    // they remembered, the regenerated key among it.
    store
        .set_client_blocked(&id(ISV), &id(CLIENT), true, UnixTime(3), &block(true))
        .await
        .unwrap();
    assert!(lazy
        .is_client_blocked(&id(ISV), &id(&CLIENT.to_uppercase()))
        .await
        .unwrap());
    assert_eq!(owner_of(&lazy, &pepper, b"key-1").await, None);
    let (revocation, audit) = revoke_jti("j1");
    store.add_revocation(&revocation, &audit).await.unwrap();
    assert!(lazy
        .is_revoked("j1", &id(ISV), &id(CLIENT), UnixTime(1))
        .await
        .unwrap());
    assert!(exact
        .is_revoked("j1", &id(ISV), &id(CLIENT), UnixTime(1))
        .await
        .unwrap());

    // Resources: remembered, and read again after a change elsewhere.
    let isv = exact.resource(&id(ISV)).await.unwrap().unwrap();
    assert!(!isv.isv_enabled);
    enable_isv(other.as_ref()).await;
    assert!(exact.resource(&id(ISV)).await.unwrap().unwrap().isv_enabled);
    assert!(exact.resource(&id(CLIENT)).await.unwrap().is_none());
}

async fn a_check_cache_that_cannot_read_the_version_answers_from_the_store_only(f: Fixture) {
    use crate::check_cache::CheckCache;
    use std::time::Duration;

    let store = f.store.clone();
    let other = f.reopen().await;
    create(store.as_ref(), ISV, b"a", b"b").await;
    let blocked = |cache: &CheckCache| {
        let cache = cache.clone();
        async move {
            cache
                .is_client_blocked(&id(ISV), &id(CLIENT))
                .await
                .unwrap()
        }
    };
    let cache = CheckCache::new(store.clone(), Duration::from_secs(3600));
    assert!(!blocked(&cache).await);
    // Blocked by another process: within its hour the cache answers from memory.
    other
        .set_client_blocked(&id(ISV), &id(CLIENT), true, UnixTime(3), &block(true))
        .await
        .unwrap();
    assert!(!blocked(&cache).await, "remembered");
    // The version row gone: changes still commit, but the version cannot be read. A change
    // here makes the cache read it, which fails: from then on it asks the store every time.
    f.behind_its_back("DELETE FROM state_version", "DELETE FROM state_version")
        .await;
    assert!(store.state_version().await.is_err());
    enable_isv(store.as_ref()).await;
    assert!(blocked(&cache).await, "the store's answer");
    other
        .set_client_blocked(&id(ISV), &id(CLIENT), false, UnixTime(4), &block(false))
        .await
        .unwrap();
    assert!(
        !blocked(&cache).await,
        "the store's answer again, not a remembered one"
    );
}

async fn a_check_cache_never_keeps_an_answer_served_from_outage_memory(f: Fixture) {
    use crate::check_cache::CheckCache;
    use std::time::Duration;

    let store = f.store.clone();
    let pepper = create(store.as_ref(), ISV, b"key-1", b"key-2").await;
    let clock = Arc::new(latch_core::FixedClock::at(UnixTime(10_000)));
    let stale: Arc<dyn Store> = Arc::new(crate::stale::StaleIfError::new(store.clone(), clock, 60));
    // Reads the version on every call, the strictest setting.
    let cache = CheckCache::new(stale, Duration::ZERO);
    let owner = || owner_of(&cache, &pepper, b"key-1");
    assert_eq!(owner().await, Some((ISV.to_owned(), KeySlot::Key1)));
    regenerate_key1(store.as_ref(), &pepper.digest(b"key-1-new"))
        .await
        .unwrap();
    // The version reads, but the key lookup fails: the outage memory answers, as it may.
    f.behind_its_back(
        "ALTER TABLE keys RENAME TO keys_gone",
        "ALTER TABLE keys RENAME TO keys_gone",
    )
    .await;
    assert_eq!(owner().await, Some((ISV.to_owned(), KeySlot::Key1)));
    // The database answers again: so does the cache, which kept nothing of the outage.
    f.behind_its_back(
        "ALTER TABLE keys_gone RENAME TO keys",
        "ALTER TABLE keys_gone RENAME TO keys",
    )
    .await;
    assert_eq!(owner().await, None);
}

async fn held_revocations_answer_exactly_as_the_store_does(f: Fixture) {
    use crate::check_cache::CheckCache;
    use std::time::Duration;

    let store = f.store.clone();
    let third = "/subscriptions/33333333-3333-4333-8333-333333333333/resourceGroups/x/providers/Microsoft.CognitiveServices/accounts/third";
    let revocations = [
        Revocation::Token {
            jti: "j1".into(),
            expires: UnixTime(5_000),
        },
        Revocation::IsvBefore {
            isv: id(ISV),
            before: UnixTime(100),
        },
        Revocation::TargetBefore {
            target: id(CLIENT),
            before: UnixTime(200),
        },
        Revocation::IsvTargetBefore {
            isv: id(CLIENT),
            target: id(third),
            before: UnixTime(300),
        },
    ];
    for r in &revocations {
        let (scope, subject, before, _) = crate::revocation_row(r);
        let event = AuditEvent::TokensRevoked {
            scope: scope.into(),
            subject,
            before,
        };
        store.add_revocation(r, &draft(event)).await.unwrap();
    }
    // Held whole, and held by nobody (more entries than the cache holds: read per token).
    let held = CheckCache::new(store.clone(), Duration::from_secs(3600));
    let per_token = CheckCache::with_limits(
        store.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(10),
        revocations.len() - 1,
    );
    assert_eq!(store.revocations(4).await.unwrap().unwrap().len(), 4);
    assert_eq!(store.revocations(3).await.unwrap(), None);
    let ids = [ISV, CLIENT, third, &CLIENT.to_uppercase()];
    let mut covered = 0;
    for jti in ["j1", "j2", "J1"] {
        for isv in ids {
            for target in ids {
                for iat in [0, 99, 100, 101, 199, 200, 299, 300, 301] {
                    let (isv, target, iat) = (id(isv), id(target), UnixTime(iat));
                    let truth = store.is_revoked(jti, &isv, &target, iat).await.unwrap();
                    let case = format!("{jti} {isv} {target} {}", iat.0);
                    assert_eq!(
                        held.is_revoked(jti, &isv, &target, iat).await.unwrap(),
                        truth,
                        "held: {case}"
                    );
                    assert_eq!(
                        per_token.is_revoked(jti, &isv, &target, iat).await.unwrap(),
                        truth,
                        "per token: {case}"
                    );
                    covered += usize::from(truth);
                }
            }
        }
    }
    // Every kind of entry covered something, and something was left uncovered.
    assert!(covered > 0 && covered < 3 * 4 * 4 * 9, "{covered}");
    // A revocation made here is held at once.
    let (revocation, audit) = revoke_jti("j2");
    store.add_revocation(&revocation, &audit).await.unwrap();
    assert!(held
        .is_revoked("j2", &id(third), &id(third), UnixTime(1_000))
        .await
        .unwrap());
}

on_every_backend!(
    resources_are_found_by_key_digest_and_by_any_spelling,
    a_second_create_under_another_spelling_is_refused_and_not_audited,
    replacing_one_key_revokes_its_old_value_only,
    isv_grants_approvals_and_blocks,
    changes_to_missing_resources_fail_and_leave_no_record,
    signing_keys_are_kept_in_order,
    the_store_survives_reopening,
    group_commit_seals_concurrent_records_into_one_chain,
    a_failing_log_refuses_every_waiting_record,
    revocations_by_token_target_and_isv,
    revocations_expire_with_the_tokens_they_cover,
    an_isv_scoped_revocation_leaves_other_isvs_alone,
    admin_credentials_rotation_and_issuers,
    an_export_verifies_offline_and_queries_filter_and_page,
    checkpoints_come_every_n_records_or_t_seconds_even_when_idle,
    archived_records_leave_the_store_and_everything_still_verifies,
    a_log_cut_or_altered_under_its_signed_head_is_not_signed_again,
    proofs_come_from_stored_subtrees_and_match_the_leaves,
    an_archiving_that_lost_a_race_removes_nothing,
    the_state_version_moves_with_every_checked_change_and_with_nothing_else,
    the_check_cache_sees_changes_made_here_at_once_and_elsewhere_at_its_next_reading,
    a_check_cache_that_cannot_read_the_version_answers_from_the_store_only,
    a_check_cache_never_keeps_an_answer_served_from_outage_memory,
    held_revocations_answer_exactly_as_the_store_does,
);

// The spool is for a shared database's outages; the embedded store's journal has none to
// wait out (a failed write stops it until a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_writer_keeps_records_through_an_outage_of_postgres() {
    a_spooled_writer_keeps_records_through_an_outage(Fixture::postgres().await).await
}

// The bounds in time, on a paused clock (the embedded store: its calls need no timers).

#[tokio::test(start_paused = true)]
async fn a_change_elsewhere_is_seen_once_max_age_has_passed_and_not_before() {
    use crate::check_cache::CheckCache;
    use std::time::Duration;

    let f = Fixture::sqlite();
    let pepper = create(f.store.as_ref(), ISV, b"key-1", b"key-2").await;
    let max_age = Duration::from_millis(100);
    let cache = CheckCache::new(f.store.clone(), max_age);
    assert!(owner_of(&cache, &pepper, b"key-1").await.is_some());
    regenerate_key1(f.reopen().await.as_ref(), &pepper.digest(b"key-1-new"))
        .await
        .unwrap();
    tokio::time::advance(max_age - Duration::from_millis(1)).await;
    assert!(
        owner_of(&cache, &pepper, b"key-1").await.is_some(),
        "within max_age: remembered"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        owner_of(&cache, &pepper, b"key-1").await.is_none(),
        "at max_age: read again"
    );
}

#[tokio::test(start_paused = true)]
async fn answers_are_read_again_after_their_entry_age_whatever_the_version() {
    use crate::check_cache::{CheckCache, MAX_ENTRY_AGE};
    use std::time::Duration;

    let f = Fixture::sqlite();
    let pepper = create(f.store.as_ref(), ISV, b"key-1", b"key-2").await;
    let entry_age = Duration::from_secs(2);
    let cache = CheckCache::with_limits(f.store.clone(), Duration::from_secs(3600), entry_age, 10);
    assert!(owner_of(&cache, &pepper, b"key-1").await.is_some());
    regenerate_key1(f.reopen().await.as_ref(), &pepper.digest(b"key-1-new"))
        .await
        .unwrap();
    tokio::time::advance(entry_age - Duration::from_millis(1)).await;
    assert!(
        owner_of(&cache, &pepper, b"key-1").await.is_some(),
        "within the entry age: remembered"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        owner_of(&cache, &pepper, b"key-1").await.is_none(),
        "at the entry age: read again"
    );
    // No entry age beyond the ceiling.
    let f = Fixture::sqlite();
    let pepper = create(f.store.as_ref(), ISV, b"key-1", b"key-2").await;
    let long = CheckCache::with_limits(
        f.store.clone(),
        Duration::from_secs(3600),
        2 * MAX_ENTRY_AGE,
        10,
    );
    assert!(owner_of(&long, &pepper, b"key-1").await.is_some());
    regenerate_key1(f.reopen().await.as_ref(), &pepper.digest(b"key-1-new"))
        .await
        .unwrap();
    tokio::time::advance(MAX_ENTRY_AGE).await;
    assert!(owner_of(&long, &pepper, b"key-1").await.is_none());
}

#[path = "tests_face.rs"]
mod face;

/// A history made by this version (11 records, the first 4 archived, a checkpoint signed over
/// the rest), to be turned back into an older version's tables and upgraded.
struct History {
    key: latch_audit::signer::AuditSigner,
    archive: Vec<String>,
    before: latch_core::checkpoint::Checkpoint,
}

impl History {
    async fn make(f: &Fixture) -> History {
        let (rng, clock) = (
            SystemRandom::new(),
            latch_core::FixedClock::at(UnixTime(1_000)),
        );
        let key =
            latch_audit::signer::AuditSigner::open(f.dir.path(), f.store.as_ref(), &rng, &clock)
                .await
                .unwrap();
        refusals_from_2001(f.store.as_ref(), 10).await;
        let mut archive: Vec<String> = Vec::new();
        archive_before(f.store.as_ref(), &key, 2_004, &mut archive)
            .await
            .unwrap();
        let before = latch_audit::signer::checkpoint(f.store.as_ref(), &key, CHAIN, &rng, &clock)
            .await
            .unwrap();
        assert_eq!(before.size, 12, "11 records and the archiving's own");
        History {
            key,
            archive,
            before,
        }
    }

    /// After the upgrade: the chain goes on from where it was, and the checkpoint signed
    /// before verifies against an export made after, with the archive.
    async fn goes_on(&self, store: &dyn Store) {
        use latch_core::checkpoint::verify_export;
        let (rng, clock) = (
            SystemRandom::new(),
            latch_core::FixedClock::at(UnixTime(1_000)),
        );
        assert_eq!(store.audit_head(CHAIN).await.unwrap(), 12);
        store
            .append_audit(
                CHAIN,
                &[draft(AuditEvent::AccessTokenRefused {
                    reason: "after".into(),
                    status: 401,
                })],
            )
            .await
            .unwrap();
        let after = latch_audit::signer::checkpoint(store, &self.key, CHAIN, &rng, &clock)
            .await
            .unwrap();
        assert_eq!(
            after.size, 13,
            "the chain goes on, and extends the head signed before"
        );
        let mut export: Vec<String> = Vec::new();
        latch_audit::export::export(store, &self.key, None, &rng, &clock, &mut export)
            .await
            .unwrap();
        let all: Vec<String> = self.archive.iter().chain(&export).cloned().collect();
        let report = verify_export(
            &all,
            &[self.key.key().public_key()],
            Some(&self.before),
            |_| {},
        );
        assert_eq!(
            report.findings,
            [],
            "the checkpoint signed before the upgrade verifies"
        );
    }
}

/// A data directory from before the journal keeps its records in the `audit` table: at first
/// start the records move into a journal with the same sequence numbers and roots: a checkpoint
/// signed before still verifies against an export made after, archives included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_from_before_the_journal_keeps_its_history() {
    let f = Fixture::sqlite();
    let history = History::make(&f).await;

    // The data directory as the store left it before journals: the same records in the
    // `audit` table (the archived ones gone from it), no journal, no index.
    let kept = f.store.audit_records(CHAIN, 0, 1_000).await.unwrap();
    assert_eq!(kept.first().unwrap().seq, 5);
    let db = rusqlite::Connection::open(f.dir.path().join(crate::sqlite::FILE_NAME)).unwrap();
    for r in &kept {
        db.execute(
            "INSERT INTO audit (chain, seq, time, kind, outcome, body, hash, leaf) VALUES (?1, ?2, 0, 'x', 'x', ?3, ?4, ?5)",
            rusqlite::params![
                CHAIN,
                r.seq as i64,
                r.body,
                &r.hash[..],
                &latch_core::merkle::leaf_hash(r.body.as_bytes())[..]
            ],
        )
        .unwrap();
    }
    db.execute_batch("DELETE FROM audit_index; DELETE FROM audit_names;")
        .unwrap();
    let journal = f.dir.path().join("journal");
    std::fs::remove_dir_all(&journal).unwrap();
    let store = f.reopen().await;
    let left: i64 = db
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the records left the table for the journal");
    assert!(
        journal
            .join(CHAIN)
            .join("00000000000000000005.seg")
            .exists(),
        "the journal starts after the archived records"
    );
    history.goes_on(store.as_ref()).await;
}

/// A PostgreSQL database from before `audit_log`: one `audit` table of bodies, hashes and
/// index columns. The migration moves the bodies out with their sequence numbers; a checkpoint
/// signed before still verifies against an export made after, archives included, and the old
/// rows stay found by queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_before_audit_log_keeps_its_history() {
    let f = Fixture::postgres().await;
    let history = History::make(&f).await;
    assert_eq!(first_page(f.store.as_ref()).await.unwrap().0.len(), 8);

    // The tables as the store left them before: bodies and hashes in `audit`, beside the
    // index columns; heads without frontiers; the last migration not applied.
    f.behind_its_back(
        "",
        "ALTER TABLE audit_index ADD COLUMN body TEXT, ADD COLUMN hash BYTEA;
         UPDATE audit_index i SET body = l.body, hash = sha256(convert_to(l.body, 'UTF8'))
             FROM audit_log l WHERE l.chain = i.chain AND l.seq = i.seq;
         ALTER TABLE audit_index RENAME TO audit;
         DROP TABLE audit_log, audit_tree;
         ALTER TABLE audit_heads DROP COLUMN frontier;
         DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations);",
    )
    .await;
    let store = f.reopen().await;
    let (found, _) = first_page(store.as_ref()).await.unwrap();
    assert_eq!(found.len(), 8, "the old rows are the index now");
    assert_eq!(found[0].seq, 5);
    history.goes_on(store.as_ref()).await;
}

/// Two handles on one data directory, as two processes (the service and an operator's command)
/// would hold it: both append to one chain, and each sees the other's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_append_to_one_journal() {
    let f = Fixture::sqlite();
    let other = f.reopen().await;
    let refused = |r: String| {
        draft(AuditEvent::AccessTokenRefused {
            reason: r,
            status: 401,
        })
    };
    let mut tasks = Vec::new();
    for (i, store) in [f.store.clone(), other.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                store
                    .append_audit(CHAIN, &[refused(format!("{i}-{n}"))])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(chain_verifies(f.store.as_ref()).await, 40);
    assert_eq!(chain_verifies(other.as_ref()).await, 40);
}

/// Archiving removes whole journal segments of archived records; what stays still reads, and
/// checkpoints go on from the archive's frontier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_removes_the_journal_segments_it_empties() {
    use latch_core::FixedClock;
    let dir = tempfile::tempdir().unwrap();
    let small = latch_audit::journal::Options {
        segment_bytes: 16 * 1024,
    };
    let store = SqliteStore::open_with(dir.path(), CHAIN, &SystemRandom::new(), small).unwrap();
    let (rng, clock) = (SystemRandom::new(), FixedClock::at(UnixTime(1_000)));
    let key = latch_audit::signer::AuditSigner::open(dir.path(), &store, &rng, &clock)
        .await
        .unwrap();
    refusals_from_2001(&store, 200).await;
    let journal = dir.path().join("journal").join(CHAIN);
    let before = latch_audit::journal::segments(&journal).unwrap().len();
    let mut archive: Vec<String> = Vec::new();
    let cp = archive_before(&store, &key, 2_150, &mut archive)
        .await
        .unwrap();
    let after = latch_audit::journal::segments(&journal).unwrap();
    assert!(
        after.len() < before,
        "{} segments, then {}",
        before,
        after.len()
    );
    assert!(
        after[0].0 <= cp.size + 1,
        "the first kept record is still there"
    );
    let kept = store.audit_records(CHAIN, 0, 1_000).await.unwrap();
    assert_eq!(kept[0].seq, cp.size + 1);
    let next = latch_audit::signer::checkpoint(&store, &key, CHAIN, &rng, &clock)
        .await
        .unwrap();
    assert_eq!(
        next.size, 202,
        "200 records, the key's and the archiving's own"
    );
    let mut export: Vec<String> = Vec::new();
    latch_audit::export::export(&store, &key, None, &rng, &clock, &mut export)
        .await
        .unwrap();
    let all: Vec<String> = archive.iter().chain(&export).cloned().collect();
    let report =
        latch_core::checkpoint::verify_export(&all, &[key.key().public_key()], None, |_| {});
    assert_eq!(report.findings, [], "archive and export verify together");
}
