//! Many replicas on one PostgreSQL database: what one does, the others see.

use std::time::Duration;

use serde_json::json;

use crate::database::Database;
use crate::harness::{jti, lat_body, within, Server};

/// A replica on the database at `url`, writing audit chain `chain`.
async fn replica(url: &str, chain: &str) -> Server {
    Server::start_full(
        &[],
        &[("LATCH_DATABASE_URL", url), ("LATCH_AUDIT_CHAIN", chain)],
    )
    .await
}

/// `GET /health/{live|ready}` on one of a server's listeners: the status.
async fn probe(s: &Server, url: &str, which: &str) -> u16 {
    s.client(url)
        .request("GET", &format!("/health/{which}"), &[], "")
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn replicas_on_one_database_agree_within_a_second() {
    let db = Database::new().await;
    let url = db.url();
    let url = url.as_str();
    let a = replica(url, "replica-a").await;
    let b = replica(url, "replica-b").await;
    // The first replica made the demo resources; the second found them there.
    let d = a.demo.clone();
    assert!(!d.isv_key.is_empty());
    assert!(b.demo.isv_key.is_empty(), "no second demo");
    b.secret(&d.client_key);
    for s in [&a, &b] {
        assert_eq!(probe(s, &s.url, "ready").await, 200);
        assert_eq!(probe(s, &s.face_url, "live").await, 200);
    }

    // A token from STS A opens Face front B.
    let token = a
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"]),
        )
        .await
        .body;
    b.secret(&token);
    // 501: every check passed and there is no backend to run the call.
    assert_eq!(identify_status(&b, &d.client_key, Some(&token)).await, 501);
    assert_eq!(identify_status(&b, &d.client_key, None).await, 403);

    // The client's Key1, regenerated through replica A, stops opening replica B.
    let regenerated = a
        .admin(
            "regenerate_key",
            ("authorization", &format!("Bearer {}", a.operator_token)),
            json!({"resourceId": d.client_id, "keyName": "Key1"}),
        )
        .await;
    assert_eq!(regenerated.status, 200, "{}", regenerated.body);
    let new_key = regenerated.json()["key"].as_str().unwrap().to_owned();
    a.secret(&new_key);
    b.secret(&new_key);
    let took = within(
        Duration::from_secs(1),
        "key regeneration refused on the other replica",
        async || identify_status(&b, &d.client_key, Some(&token)).await == 401,
    )
    .await;
    eprintln!("key regeneration on A refused by B after {took:?}");
    assert_eq!(identify_status(&b, &new_key, Some(&token)).await, 501);

    // The token, revoked through replica B, is refused by replica A.
    let revoked = b
        .admin(
            "revoke_token",
            ("authorization", &format!("Bearer {}", a.operator_token)),
            json!({"jti": jti(&token)}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let took = within(
        Duration::from_secs(1),
        "revocation enforced on the other replica",
        async || identify_status(&a, &new_key, Some(&token)).await == 403,
    )
    .await;
    eprintln!("revocation on B enforced by A after {took:?}");

    // A signing key rotated through A: B accepts A's new tokens once it has reloaded the keys
    // (each replica reloads them every second).
    let rotated = a
        .admin(
            "rotate_signing_key",
            ("authorization", &format!("Bearer {}", a.operator_token)),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let kid = rotated.json()["kid"].as_str().unwrap().to_owned();
    let kid_of = |token: &str| latch_core::jws::decode(token).unwrap().header.kid;
    // A signs with the new key once it has reloaded the ring (within a second)...
    let mut fresh = String::new();
    within(
        Duration::from_secs(1),
        "the new signing key used",
        async || {
            fresh = a
                .issue(
                    Some(&d.isv_key),
                    "",
                    &lat_body(&d.client_id, &["Face.Identification"]),
                )
                .await
                .body;
            b.secret(&fresh);
            kid_of(&fresh) == kid
        },
    )
    .await;
    // ...and B accepts what the new key signed within a second of the rotation too.
    let took = within(
        Duration::from_secs(1),
        "the new key's token accepted on the other replica",
        async || identify_status(&b, &new_key, Some(&fresh)).await == 501,
    )
    .await;
    eprintln!("rotation on A accepted by B after {took:?}");

    // The ISV, disabled through replica B, can no longer issue through replica A, and the
    // tokens it issued stop opening A's Face front.
    let disabled = b
        .admin(
            "disable_isv",
            ("authorization", &format!("Bearer {}", a.operator_token)),
            json!({"resourceId": d.isv_id}),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    let took = within(
        Duration::from_secs(1),
        "the disabled ISV refused on the other replica",
        async || {
            let answer = a
                .issue(
                    Some(&d.isv_key),
                    "",
                    &lat_body(&d.client_id, &["Face.Identification"]),
                )
                .await;
            answer.status != 200 && identify_status(&a, &new_key, Some(&fresh)).await == 403
        },
    )
    .await;
    eprintln!("ISV disabled on B refused by A after {took:?}");

    // Each replica wrote its own chain, and each chain verifies.
    let store = a.store().await;
    let chains = store.audit_chains().await.unwrap();
    for chain in ["replica-a", "replica-b"] {
        assert!(chains.iter().any(|c| c == chain), "{chains:?}");
        let records = store.audit_records(chain, 0, 100_000).await.unwrap();
        latch_core::audit::verify_chain(
            chain,
            1,
            latch_core::audit::GENESIS,
            records.iter().map(|r| r.body.as_str()),
        )
        .unwrap();
    }
    // The auditor keeps each replica's audit key; an export through either verifies offline
    // with both keys, and not with one alone (the other's checkpoints would be unaccounted for).
    let work = a.dir.path().to_owned();
    let auditor = |s: &Server, args: &[&str]| {
        let mut all = vec!["--server", &s.admin_url, "--token", &a.auditor_token];
        all.extend_from_slice(args);
        let out = s.cli(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    std::fs::write(
        work.join("key-a.json"),
        auditor(&a, &["--json", "audit", "key"]),
    )
    .unwrap();
    std::fs::write(
        work.join("key-b.json"),
        auditor(&b, &["--json", "audit", "key"]),
    )
    .unwrap();
    let export = work.join("export.jsonl");
    auditor(&b, &["audit", "export", "--out", export.to_str().unwrap()]);
    let verify = |keys: &[&str]| {
        let mut args = vec![
            "audit".to_owned(),
            "verify".to_owned(),
            export.display().to_string(),
        ];
        for k in keys {
            args.extend(["--key-file".to_owned(), work.join(k).display().to_string()]);
        }
        a.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let both = verify(&["key-a.json", "key-b.json"]);
    assert!(
        both.status.success(),
        "{}{}",
        String::from_utf8_lossy(&both.stdout),
        String::from_utf8_lossy(&both.stderr)
    );
    let text = String::from_utf8_lossy(&both.stdout);
    assert!(text.contains("in 2 chain(s)"), "{text}");
    assert_eq!(verify(&["key-b.json"]).status.code(), Some(6));

    a.finish().await;
    b.finish().await;
    db.drop().await;
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), which
/// the test may stop and start: the machine's shared server is left alone.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let pg = Self::init();
        pg.up();
        pg
    }

    fn init() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres { dir, port };
        pg.run_as_owner(
            "initdb",
            &["-A", "trust", "-U", "postgres", "-D", &pg.data()],
        );
        pg
    }

    /// A server that takes TLS connections only, with this certificate.
    fn start_tls_only(certificate: &crate::tls::Issued) -> PrivatePostgres {
        let pg = Self::init();
        let data = std::path::PathBuf::from(pg.data());
        std::fs::write(data.join("server.crt"), &certificate.chain).unwrap();
        std::fs::write(data.join("server.key"), &certificate.key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut conf, b"\nssl = on\n").unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )
        .unwrap();
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("pgdata").display().to_string()
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
    fn run_as_owner(&self, tool: &str, args: &[&str]) {
        let program = format!("{PG_BIN}/{tool}");
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let mut command = if root {
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .unwrap();
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            std::process::Command::new(&program)
        };
        let out = command.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run_as_owner(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    fn down(&self) {
        self.run_as_owner("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::process::Command::new(format!("{PG_BIN}/pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test]
async fn when_the_database_goes_away_issuance_fails_closed_and_everyone_recovers() {
    let pg = PrivatePostgres::start();
    let url = pg.url();
    let a = replica(&url, "replica-a").await;
    let b = replica(&url, "replica-b").await;
    let d = a.demo.clone();
    b.secret(&d.isv_key);
    let body = lat_body(&d.client_id, &["Face.Identification"]);
    let mut issued = Vec::new();
    for s in [&a, &b] {
        let answer = s.issue(Some(&d.isv_key), "", &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        issued.push(jti(&answer.body));
    }

    pg.down();
    for s in [&a, &b] {
        let answer = s.issue(Some(&d.isv_key), "", &body).await;
        assert_eq!(
            answer.status, 503,
            "no token without its record: {}",
            answer.body
        );
        assert!(!answer.body.contains("eyJ"));
        assert_eq!(probe(s, &s.url, "ready").await, 503);
        assert_eq!(probe(s, &s.url, "live").await, 200);
    }

    pg.up();
    for s in [&a, &b] {
        let took = within(
            Duration::from_secs(15),
            "issuance after the database came back",
            async || {
                let answer = s.issue(Some(&d.isv_key), "", &body).await;
                if answer.status == 200 {
                    issued.push(jti(&answer.body));
                }
                answer.status == 200
            },
        )
        .await;
        eprintln!("issuing again {took:?} after the database came back");
        // Readiness answers are reused for a second.
        within(
            Duration::from_secs(3),
            "readiness after the database came back",
            async || probe(s, &s.url, "ready").await == 200,
        )
        .await;
    }

    // Every token handed out has its issuance record; both chains verify.
    let store = a.store().await;
    let mut recorded = Vec::new();
    for chain in ["replica-a", "replica-b"] {
        let records = store.audit_records(chain, 0, 100_000).await.unwrap();
        latch_core::audit::verify_chain(
            chain,
            1,
            latch_core::audit::GENESIS,
            records.iter().map(|r| r.body.as_str()),
        )
        .unwrap();
        for r in &records {
            let record: latch_core::audit::SealedRecord = serde_json::from_str(&r.body).unwrap();
            if let latch_core::audit::AuditEvent::LimitedAccessTokenIssued { jti, .. } =
                record.event
            {
                recorded.push(jti);
            }
        }
    }
    for jti in &issued {
        assert!(recorded.contains(jti), "token {jti} has no issuance record");
    }
    assert_eq!(
        recorded.len(),
        issued.len(),
        "no record of a token never handed out"
    );
    a.finish().await;
    b.finish().await;
}

#[tokio::test]
async fn the_database_connection_is_tls_verified_against_the_configured_ca() {
    let ca = crate::tls::Ca::new();
    let pg = PrivatePostgres::start_tls_only(&ca.current(&["localhost"]));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let store = |url: String, ca: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(crate::harness::BIN);
        command
            .args(["store", "migrate"])
            .env("LATCH_DATABASE_URL", url)
            .env_remove("LATCH_DATABASE_CA")
            .env_remove("LATCH_CONFIG");
        if let Some(ca) = ca {
            command.env("LATCH_DATABASE_CA", ca);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let url = |extra: &str| {
        format!(
            "host=localhost port={} user=postgres dbname=postgres{extra}",
            pg.port
        )
    };
    // The server takes TLS only: with the CA that issued its certificate, the migration runs.
    let (ok, out) = store(url(" sslmode=require"), Some(&ca_file));
    assert!(ok, "{out}");
    assert!(out.contains("migration(s) applied"), "{out}");
    // Without it (the web PKI roots), the certificate is not trusted and nothing is sent.
    let (ok, out) = store(url(" sslmode=require"), None);
    assert!(!ok);
    assert!(
        out.contains("UnknownIssuer") || out.contains("certificate"),
        "{out}"
    );
    // A loopback host without sslmode speaks plain TCP, which this server refuses.
    let (ok, out) = store(url(""), Some(&ca_file));
    assert!(!ok);
    assert!(
        out.contains("no encryption") || out.contains("pg_hba"),
        "{out}"
    );
}

/// `POST /face/v1.0/identify` on `s` with a key and maybe a token: the status.
async fn identify_status(s: &Server, key: &str, token: Option<&str>) -> u16 {
    let body =
        json!({"faceIds": ["c5c24a82-6845-4031-9d5d-978df9175426"], "largePersonGroupId": "g"})
            .to_string();
    let lat = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Ocp-Apim-Subscription-Key", key),
        ("content-type", "application/json"),
    ];
    if let Some(lat) = &lat {
        headers.push(("LimitedAccessToken", lat.as_str()));
    }
    s.client(&s.face_url)
        .request("POST", "/face/v1.0/identify", &headers, &body)
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn a_face_front_set_to_cached_serves_through_an_outage_and_audits_every_call() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latch.toml");
    std::fs::write(
        &config,
        "[face]\nstore_outage = \"cached\"\nstore_outage_secs = 60\n",
    )
    .unwrap();
    let s = Server::start_full(
        &["--config", config.to_str().unwrap()],
        &[
            ("LATCH_DATABASE_URL", &pg.url()),
            ("LATCH_AUDIT_CHAIN", "edge-1"),
        ],
    )
    .await;
    let d = s.demo.clone();
    let token = s
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"]),
        )
        .await
        .body;
    s.secret(&token);
    // 501: every check passed (no backend is configured).
    assert_eq!(identify_status(&s, &d.client_key, Some(&token)).await, 501);

    pg.down();
    // What was read a moment ago still proves this call; its usage record is spooled.
    assert_eq!(identify_status(&s, &d.client_key, Some(&token)).await, 501);
    let spool = s.data_dir().join("audit-spool-edge-1.jsonl");
    assert_eq!(std::fs::read_to_string(&spool).unwrap().lines().count(), 1);
    // A key it never saw cannot be proven: refused. Issuance stays closed.
    assert_eq!(identify_status(&s, &d.client_key2, Some(&token)).await, 503);
    assert_eq!(
        s.issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"])
        )
        .await
        .status,
        503
    );

    pg.up();
    within(
        Duration::from_secs(15),
        "the Face front after the database came back",
        async || identify_status(&s, &d.client_key, Some(&token)).await == 501,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&spool).unwrap(),
        "",
        "the spool was emptied"
    );
    let store = s.store().await;
    let records = store.audit_records("edge-1", 0, 100_000).await.unwrap();
    latch_core::audit::verify_chain(
        "edge-1",
        1,
        latch_core::audit::GENESIS,
        records.iter().map(|r| r.body.as_str()),
    )
    .unwrap();
    let used = records
        .iter()
        .filter(|r| r.body.contains("\"limited_access_token_used\""))
        .count();
    assert!(used >= 3, "before, during and after the outage: {used}");
    s.finish().await;
}

/// A replica with the built-in engine on, its weights from the tests' shared directory.
async fn engine_replica(url: &str, chain: &str) -> Server {
    let models = latch_models::test_dir().expect("the engine's weights and photos");
    let models = models.to_string_lossy().into_owned();
    Server::start_full(
        &[],
        &[
            ("LATCH_DATABASE_URL", url),
            ("LATCH_AUDIT_CHAIN", chain),
            ("LATCH_FACE_ENGINE", "on"),
            ("LATCH_FACE_MODELS_DIR", &models),
        ],
    )
    .await
}

#[tokio::test]
async fn the_engine_on_replicas_shares_groups_training_and_face_ids() {
    let db = Database::new().await;
    let url = db.url();
    let a = engine_replica(&url, "engine-a").await;
    let b = engine_replica(&url, "engine-b").await;
    let d = a.demo.clone();
    b.secret(&d.client_key);
    let token = a.demo_token(&["Face.Identification"]).await;
    b.secret(&token);
    let lat = format!("Bearer {token}");
    let json_headers = [
        ("Ocp-Apim-Subscription-Key", d.client_key.as_str()),
        ("LimitedAccessToken", lat.as_str()),
        ("Content-Type", "application/json"),
    ];
    let image_headers = [
        ("Ocp-Apim-Subscription-Key", d.client_key.as_str()),
        ("LimitedAccessToken", lat.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    let photos = latch_models::test_dir().unwrap().join("photos");
    let photo = |name: &str| std::fs::read(photos.join(name)).unwrap();

    // Enrolled through A: the group, a person and a face; trained.
    let put = a
        .face(
            "PUT",
            "/face/v1.0/largepersongroups/staff",
            &json_headers,
            r#"{"name": "Staff"}"#,
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let person = a
        .face(
            "POST",
            "/face/v1.0/largepersongroups/staff/persons",
            &json_headers,
            r#"{"name": "Barack Obama"}"#,
        )
        .await
        .json()["personId"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = a
        .client(&a.face_url)
        .send(
            "POST",
            &format!("/face/v1.0/largepersongroups/staff/persons/{person}/persistedfaces"),
            &image_headers,
            photo("obama.jpg"),
        )
        .await
        .unwrap();
    assert_eq!(added.status, 200, "{}", added.body);
    let trained = a
        .face(
            "POST",
            "/face/v1.0/largepersongroups/staff/train",
            &json_headers,
            "",
        )
        .await;
    assert_eq!(trained.status, 202, "{}", trained.body);
    let location = trained.header("operation-location").to_owned();
    let path = &location[location
        .find("/face/")
        .expect("an absolute URL to /face/...")..];

    // Polled, detected and identified through B.
    let status = b.face("GET", path, &json_headers, "").await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.json()["status"], "succeeded");
    let detected = b
        .client(&b.face_url)
        .send(
            "POST",
            "/face/v1.0/detect",
            &image_headers,
            photo("obama2.jpg"),
        )
        .await
        .unwrap();
    assert_eq!(detected.status, 200, "{}", detected.body);
    let face_id = detected.json()[0]["faceId"].as_str().unwrap().to_owned();
    let body = format!(r#"{{"largePersonGroupId": "staff", "faceIds": ["{face_id}"]}}"#);
    let identified = b
        .face("POST", "/face/v1.0/identify", &json_headers, &body)
        .await;
    assert_eq!(identified.status, 200, "{}", identified.body);
    assert_eq!(
        identified.json()[0]["candidates"][0]["personId"],
        person.as_str()
    );
    // ...and the face id B made is good on A.
    let identified = a
        .face("POST", "/face/v1.0/identify", &json_headers, &body)
        .await;
    assert_eq!(
        identified.json()[0]["candidates"][0]["personId"],
        person.as_str()
    );

    // Deleted through B: gone for A.
    let deleted = b
        .face(
            "DELETE",
            "/face/v1.0/largepersongroups/staff",
            &json_headers,
            "",
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let gone = a
        .face(
            "GET",
            "/face/v1.0/largepersongroups/staff",
            &json_headers,
            "",
        )
        .await;
    assert_eq!(gone.error().0, 404);
    assert_eq!(gone.error().1, "LargePersonGroupNotFound");
    a.finish().await;
    b.finish().await;
    db.drop().await;
}
