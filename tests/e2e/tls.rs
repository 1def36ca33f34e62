//! HTTPS: real handshakes with rustls and OpenSSL clients, certificates renewed under load,
//! broken renewals, and certificates refused at start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{within, Server, BIN};
use latch_core::audit::{AuditEvent, SealedRecord};

/// `(reason, cname, names)` of every certificate put in service, in order.
fn installed(records: &[SealedRecord]) -> Vec<(String, String, Vec<String>)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::TlsCertificateInstalled {
                reason,
                cname,
                names,
                ..
            } => Some((reason.clone(), cname.clone(), names.clone())),
            _ => None,
        })
        .collect()
}

/// Why each refused renewal was refused.
fn refused(records: &[SealedRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::TlsCertificateRefused { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

const CNAME: &str = "sts.test.example";

/// A throwaway certificate authority.
pub(crate) struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub(crate) pem: String,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        Self::named("latch e2e test CA")
    }

    fn named(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names`, valid from `from` to `to` (Unix seconds), with a new
    /// key: (chain PEM, key PEM, certificate DER).
    fn issue(&self, names: &[&str], from: i64, to: i64) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain: format!("{}{}", cert.pem(), self.pem),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub(crate) fn current(&self, names: &[&str]) -> Issued {
        let now = now();
        self.issue(names, now - 3600, now + 30 * 86_400)
    }
}

pub(crate) struct Issued {
    pub(crate) chain: String,
    pub(crate) key: String,
    der: Vec<u8>,
}

/// Writes a pair the way a careful renewal does: each file whole, then renamed into place.
fn install(dir: &Path, issued: &Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    for (path, text) in [(&key, &issued.key), (&cert, &issued.chain)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert, key)
}

async fn serve_with(issued: &Issued, cname: &str) -> (Server, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = install(files.path(), issued);
    let s = Server::start_with(&tls_args(
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        cname,
    ))
    .await;
    assert!(s.url.starts_with("https://"), "{}", s.url);
    for line in key_lines(&issued.key) {
        s.secret(line);
    }
    (s, files)
}

/// The base64 lines of a PEM key: none may appear in any log, message or record.
fn key_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// What one HTTPS request saw.
#[derive(Debug)]
struct Seen {
    version: ProtocolVersion,
    certificate: Vec<u8>,
    status: u16,
}

/// A new connection to `url` as `name`, trusting `ca_pem` only, offering `versions`; then one
/// `GET /.well-known/jwks.json`.
async fn fetch(
    url: &str,
    name: &str,
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Seen, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = url.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = stream.get_ref();
    let version = session.protocol_version().unwrap();
    let certificate = session.peer_certificates().unwrap()[0].to_vec();
    stream
        .write_all(
            format!(
                "GET /.well-known/jwks.json HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {answer}"))?;
    Ok(Seen {
        version,
        certificate,
        status,
    })
}

/// The certificate a new TLS 1.3 connection to the STS is given.
async fn presented(s: &Server, ca: &Ca) -> Vec<u8> {
    fetch(&s.url, CNAME, &ca.pem, &[&rustls::version::TLS13])
        .await
        .unwrap()
        .certificate
}

/// `openssl s_client` offering exactly one protocol version: what it printed.
fn s_client(url: &str, version: &str) -> String {
    let addr = url.trim_start_matches("https://");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", CNAME, version])
        // Lets OpenSSL 3 offer TLS 1.0 and 1.1 at all, so that the refusal is the server's.
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn now() -> i64 {
    // The server under test reads the wall clock: so do its certificates.
    latch_core::Clock::now(&latch_core::SystemClock).0
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served_with_the_configured_certificate_and_older_versions_refused() {
    let ca = Ca::new();
    let issued = ca.current(&[CNAME]);
    let (s, _files) = serve_with(&issued, CNAME).await;
    for (url, service) in [
        (&s.url, "STS"),
        (&s.face_url, "Face front"),
        (&s.admin_url, "admin API"),
    ] {
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let seen = fetch(url, CNAME, &ca.pem, &[version])
                .await
                .unwrap_or_else(|e| panic!("{service} over {:?}: {e}", version.version));
            assert_eq!(seen.version, version.version, "{service}");
            assert_eq!(
                seen.certificate, issued.der,
                "{service}: the configured certificate"
            );
        }
    }
    let seen = fetch(&s.url, CNAME, &ca.pem, &[&rustls::version::TLS13])
        .await
        .unwrap();
    assert_eq!(seen.status, 200);

    // OpenSSL agrees, and offering only TLS 1.0 or 1.1 ends in the server's alert.
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(&s.url, flag);
        assert!(
            out.contains(&format!("New, {name}, Cipher is")),
            "{flag}: {out}"
        );
    }
    for flag in ["-tls1", "-tls1_1"] {
        let out = s_client(&s.url, flag);
        assert!(out.contains("Cipher is (NONE)"), "{flag}: {out}");
        assert!(
            out.contains("alert handshake failure") || out.contains("alert protocol version"),
            "{flag}: the server refused the hello: {out}"
        );
    }

    // Without trust in the issuer, or for another name, a client refuses the server.
    let stranger = Ca::named("a stranger's CA");
    let err = fetch(&s.url, CNAME, &stranger.pem, &[&rustls::version::TLS13])
        .await
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    let err = fetch(
        &s.url,
        "other.test.example",
        &ca.pem,
        &[&rustls::version::TLS13],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("not valid for name \"other.test.example\""),
        "{err}"
    );
    assert_eq!(
        installed(&s.audit().await),
        [(
            "startup".to_owned(),
            CNAME.to_owned(),
            vec![CNAME.to_owned()]
        )]
    );
    s.finish().await;
}

#[tokio::test]
async fn a_renewal_under_load_switches_certificates_with_no_failed_request() {
    let ca = Ca::new();
    let first = ca.current(&[CNAME]);
    let (s, files) = serve_with(&first, CNAME).await;
    let second = ca.current(&[CNAME, "eu.sts.test.example"]);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, ca_pem, stop, failures, done) = (
            s.url.clone(),
            ca.pem.clone(),
            stop.clone(),
            failures.clone(),
            done.clone(),
        );
        let (old, new) = (first.der.clone(), second.der.clone());
        workers.push(tokio::spawn(async move {
            // Which certificate each request saw, in order: 0 the first, 1 the renewed.
            let mut order = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match fetch(
                    &url,
                    CNAME,
                    &ca_pem,
                    &[&rustls::version::TLS13, &rustls::version::TLS12],
                )
                .await
                {
                    Ok(seen) if seen.status == 200 && seen.certificate == old => order.push(0),
                    Ok(seen) if seen.status == 200 && seen.certificate == new => order.push(1),
                    Ok(seen) => failures.lock().unwrap().push(format!("{seen:?}")),
                    Err(e) => failures.lock().unwrap().push(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            order
        }));
    }
    while done.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    install(files.path(), &second);
    let renewed_at = done.load(Ordering::Relaxed);
    // The watch looks every second and waits for the files to stand still.
    within(
        Duration::from_secs(15),
        "the renewal picked up",
        async || presented(&s, &ca).await == second.der,
    )
    .await;
    let switched_at = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < switched_at + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut saw_old = false;
    for worker in workers {
        let order = worker.await.unwrap();
        saw_old |= order.contains(&0);
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "never back to the old certificate: {order:?}"
        );
        assert_eq!(
            order.last(),
            Some(&1),
            "every worker ends on the new certificate"
        );
    }
    assert!(saw_old, "the load ran before the renewal");
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    eprintln!(
        "renewal under load: {} requests, {renewed_at} before the files were replaced, none failed",
        done.load(Ordering::Relaxed)
    );

    let installed = installed(&s.audit().await);
    assert_eq!(installed.len(), 2, "{installed:?}");
    assert_eq!(installed[1].0, "files changed");
    assert_eq!(installed[1].2, [CNAME, "eu.sts.test.example"]);
    s.finish().await;
}

#[tokio::test]
async fn a_broken_renewal_is_refused_and_the_old_certificate_keeps_serving() {
    let ca = Ca::new();
    let good = ca.current(&[CNAME]);
    let (s, files) = serve_with(&good, CNAME).await;

    // A certificate for another name, with its own key.
    install(files.path(), &ca.current(&["other.test.example"]));
    // A key that is not the certificate's, delivered with SIGHUP.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stray = ca.current(&[CNAME]);
    std::fs::write(files.path().join("fullchain.pem"), &stray.chain).unwrap();
    std::fs::write(files.path().join("privkey.pem"), &good.key).unwrap();
    s.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // An expired one.
    let now = now();
    install(files.path(), &ca.issue(&[CNAME], now - 7200, now - 3600));
    s.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        presented(&s, &ca).await,
        good.der,
        "the old certificate serves on"
    );

    let refused = refused(&s.audit().await);
    assert!(
        refused.iter().any(|e| e
            == "the certificate does not cover sts.test.example; it covers: other.test.example"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|e| e.contains("does not belong to the certificate")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|e| e.contains("expired at")),
        "{refused:?}"
    );
    assert!(s
        .stderr()
        .contains("new certificate refused; the one in service stays"));

    // A good pair afterwards is taken.
    let fixed = ca.current(&[CNAME]);
    install(files.path(), &fixed);
    s.signal("-HUP");
    within(
        Duration::from_secs(10),
        "the fixed pair taken",
        async || presented(&s, &ca).await == fixed.der,
    )
    .await;
    s.finish().await;
}

/// `--tls-cert CERT --tls-key KEY --tls-cname NAME`.
fn tls_args<'a>(cert: &'a str, key: &'a str, cname: &'a str) -> [&'a str; 6] {
    ["--tls-cert", cert, "--tls-key", key, "--tls-cname", cname]
}

/// Runs `latch serve` expecting it to refuse to start: (exit code, standard error).
fn refused_start(args: &[&str]) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .args([
            "--sts-listen",
            "127.0.0.1:0",
            "--face-listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .env_remove("LATCH_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_certificate_that_does_not_fit_refuses_to_start_and_says_why() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_owned();
    let write = |name: &str, text: &str| std::fs::write(files.path().join(name), text).unwrap();
    let good = ca.current(&[CNAME, "10.1.2.3"]);
    write("good.pem", &good.chain);
    write("good.key", &good.key);
    let now = now();
    let expired = ca.issue(&[CNAME], now - 7200, now - 3600);
    write("expired.pem", &expired.chain);
    write("expired.key", &expired.key);
    let other = ca.current(&[CNAME]);
    write("other.key", &other.key);
    let keys: Vec<String> = [&good.key, &expired.key, &other.key]
        .iter()
        .flat_map(|k| key_lines(k))
        .map(str::to_owned)
        .collect();
    let refused_start = |args: &[&str]| {
        let (code, err) = refused_start(args);
        for line in &keys {
            assert!(
                !err.contains(line.as_str()),
                "key material in a message: {err}"
            );
        }
        (code, err)
    };

    let (code, err) = refused_start(&tls_args(
        &path("good.pem"),
        &path("good.key"),
        "face.test.example",
    ));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("the certificate does not cover face.test.example; it covers: sts.test.example, 10.1.2.3"),
        "{err}"
    );
    let (code, err) = refused_start(&tls_args(&path("expired.pem"), &path("expired.key"), CNAME));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("the certificate expired at"), "{err}");
    let (code, err) = refused_start(&tls_args(&path("good.pem"), &path("other.key"), CNAME));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("does not belong to the certificate"), "{err}");
    let (code, err) = refused_start(&[
        "--tls-cert",
        &path("good.pem"),
        "--tls-key",
        &path("good.key"),
    ]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("tls.cname"), "{err}");
    let (code, err) = refused_start(&["--tls", "off", "--tls-cname", CNAME]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("tls.mode"), "{err}");
}

#[tokio::test]
async fn plain_http_is_served_only_when_asked_for_and_with_a_warning() {
    let s = Server::start_with(&["--tls", "off"]).await;
    assert!(s.url.starts_with("http://"), "{}", s.url);
    assert!(s.stdout().contains("WARNING: TLS is off"), "{}", s.stdout());
    let a = s.request("GET", "/.well-known/jwks.json", &[], "").await;
    assert_eq!(a.status, 200);
    let modes: Vec<_> = s
        .audit()
        .await
        .into_iter()
        .filter_map(|r| match r.event {
            AuditEvent::ServiceConfigured { settings, .. } => Some(settings["tls"]["mode"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(modes, [serde_json::json!("off")]);
    assert!(installed(&s.audit().await).is_empty());
    // SIGHUP does not stop a server without TLS.
    s.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.request("GET", "/.well-known/jwks.json", &[], "")
            .await
            .status,
        200
    );
    s.finish().await;

    // Keys from other hosts in plain HTTP earn a warning of their own.
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--role",
            "face",
            "--tls",
            "off",
            "--face-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env_remove("LATCH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line == "latch: ready" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.contains("the Face front listens on 0.0.0.0:") && out.contains("without TLS: subscription keys and tokens from other hosts cross the network in the clear"),
        "{out}"
    );
}

#[tokio::test]
async fn the_development_certificate_says_what_it_is_on_every_start() {
    // `serve` without a certificate makes one in the data directory, once.
    let s = Server::process().await;
    let cacert = s.cacert.clone().expect("a development certificate");
    assert!(
        s.stdout().contains("for development only"),
        "{}",
        s.stdout()
    );
    assert!(std::fs::read_to_string(s.data_dir().join("admin.env"))
        .unwrap()
        .contains(&format!("LATCH_CACERT={}", cacert.display())));
    let before = std::fs::read(&cacert).unwrap();
    let s = s.kill_and_restart().await;
    assert!(
        s.stdout().contains("for development only"),
        "said again: {}",
        s.stdout()
    );
    assert_eq!(
        std::fs::read(&cacert).unwrap(),
        before,
        "the same certificate"
    );
    assert_eq!(
        s.request("GET", "/.well-known/jwks.json", &[], "")
            .await
            .status,
        200
    );
    // Another cname: a new development certificate, for it.
    let s = s.restart_with(&["--tls-cname", "dev2.test.example"]).await;
    assert!(
        s.stdout()
            .contains("is a self-signed certificate for dev2.test.example"),
        "{}",
        s.stdout()
    );
    assert_ne!(std::fs::read(&cacert).unwrap(), before, "remade");
    let s = s.restart_with(&[]).await;

    // The admin client trusts it through LATCH_CACERT (from admin.env), and only then.
    let listed = s.cli(&[
        "--server",
        &s.admin_url.clone(),
        "--token",
        &s.operator_token.clone(),
        "resource",
        "list",
    ]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let untrusting = Command::new(BIN)
        .args([
            "--server",
            &s.admin_url,
            "--token",
            &s.operator_token,
            "resource",
            "list",
        ])
        .env_remove("LATCH_CACERT")
        .env_remove("LATCH_CONFIG")
        .output()
        .unwrap();
    assert_eq!(untrusting.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&untrusting.stderr).contains(
            "UnknownIssuer (a development certificate? trust it with --cacert or LATCH_CACERT)"
        ),
        "{}",
        String::from_utf8_lossy(&untrusting.stderr)
    );
    s.finish().await;

    // `latch tls self-signed` writes a pair for a name, never over existing files; serving it
    // earns the same warning; `latch tls check` runs the start's checks.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let made = Command::new(BIN)
        .args([
            "tls",
            "self-signed",
            "--cname",
            "dev.test.example",
            "--out",
            out_dir,
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(String::from_utf8_lossy(&made.stdout).contains("For development only"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = Command::new(BIN)
        .args([
            "tls",
            "self-signed",
            "--cname",
            "dev.test.example",
            "--out",
            out_dir,
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(4));
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let check = |cname: &str| {
        Command::new(BIN)
            .args(["tls", "check"])
            .env("LATCH_TLS_CNAME", cname)
            .env("LATCH_TLS_CERT", &cert)
            .env("LATCH_TLS_KEY", &key)
            .env_remove("LATCH_CONFIG")
            .output()
            .unwrap()
    };
    let ok = check("dev.test.example");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        text.contains("names: dev.test.example") && text.contains("self-signed"),
        "{text}"
    );
    let bad = check("prod.test.example");
    assert_eq!(bad.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("it covers: dev.test.example"));

    let s = Server::start_with(&tls_args(
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        "dev.test.example",
    ))
    .await;
    assert!(
        s.stdout()
            .contains("is a self-signed certificate for dev.test.example: for development only"),
        "{}",
        s.stdout()
    );
    s.finish().await;
}

#[tokio::test]
async fn a_renewal_whose_audit_record_cannot_be_written_waits_for_the_log() {
    if crate::database::embedded_only(
        "a_renewal_whose_audit_record_cannot_be_written_waits_for_the_log",
        "the journal's lock",
    ) {
        return;
    }
    let ca = Ca::new();
    let good = ca.current(&[CNAME]);
    let (s, files) = serve_with(&good, CNAME).await;
    // The log refuses every record: another process holds the audit journal (a real lock
    // held by a real process, not a mock) for longer than an append waits.
    let lock = s.data_dir().join("journal/main/LOCK");
    let mut holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "600"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let next = ca.current(&[CNAME]);
    for line in key_lines(&next.key) {
        s.secret(line);
    }
    install(files.path(), &next);
    s.signal("-HUP");
    within(
        Duration::from_secs(10),
        "the audit failure logged",
        async || s.stderr().contains("cannot audit the new certificate"),
    )
    .await;
    assert_eq!(
        presented(&s, &ca).await,
        good.der,
        "no certificate serves unaccounted for"
    );

    // Once the log takes records again, the waiting pair goes into service by itself.
    holder.kill().unwrap();
    holder.wait().unwrap();
    within(
        Duration::from_secs(10),
        "the pair tried again",
        async || presented(&s, &ca).await == next.der,
    )
    .await;
    assert_eq!(installed(&s.audit().await).len(), 2);
    s.finish().await;
}
