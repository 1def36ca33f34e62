//! Runs `latch serve` as a child process and talks HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use latch_store::sqlite::SqliteStore;
use latch_store::Store;
use serde_json::Value;

use crate::in_process::InProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_latch");
/// The demo resources `serve` creates.
pub const DEMO_ISV: &str = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/demo-isv-rg/providers/Microsoft.CognitiveServices/accounts/demo-isv-face";
pub const DEMO_CLIENT: &str = "/subscriptions/00000000-0000-4000-8000-000000000002/resourceGroups/demo-client-rg/providers/Microsoft.CognitiveServices/accounts/demo-client-face";

/// The servers the tests of this binary run now, and whether one test has the machine to itself.
struct Machine {
    running: usize,
    alone: bool,
}

static MACHINE: Mutex<Machine> = Mutex::new(Machine {
    running: 0,
    alone: false,
});
static MACHINE_FREED: std::sync::Condvar = std::sync::Condvar::new();

fn machine() -> std::sync::MutexGuard<'static, Machine> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A test that loads both cores to their limit (a flood) takes the machine for itself: beside
/// it, other tests' promises of timing ("within a second") would not be theirs to keep. It waits
/// until no other test runs a server; until it is dropped, other tests wait to start one.
pub struct Alone(());

/// One server counted as running; uncounted when dropped (also when its start panics).
struct Running(());

impl Running {
    /// Counts a server, once no test has the machine to itself (unless `alone` is that test's).
    fn count(alone: Option<&Alone>) -> Running {
        let mut m = machine();
        while m.alone && alone.is_none() {
            m = MACHINE_FREED.wait(m).unwrap_or_else(|p| p.into_inner());
        }
        m.running += 1;
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        machine().running -= 1;
        MACHINE_FREED.notify_all();
    }
}

impl Alone {
    pub fn take() -> Alone {
        let mut m = machine();
        while m.running > 0 || m.alone {
            m = MACHINE_FREED.wait(m).unwrap_or_else(|p| p.into_inner());
        }
        m.alone = true;
        Alone(())
    }

    /// Starts a server for the test that has the machine.
    pub async fn start_full(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let running = Running::count(Some(self));
        Server::launch_counted(running, tempfile::tempdir().unwrap(), extra, env).await
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        machine().alone = false;
        MACHINE_FREED.notify_all();
    }
}

/// A running server: the services in this test process ([`Server::start`]), or a `latch serve`
/// process ([`Server::process`] and the others), which a test needs to send it signals, kill it
/// or restart it.
pub struct Server {
    child: Option<Child>,
    in_process: Option<InProcess>,
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The Face front's base URL, when it runs.
    pub face_url: String,
    /// The admin API's base URL, when it runs.
    pub admin_url: String,
    /// The operator and auditor tokens from `admin.env`.
    pub operator_token: String,
    pub auditor_token: String,
    stdout: Arc<Mutex<String>>,
    stderr_path: PathBuf,
    /// Every secret this test handled: keys and tokens. None may appear in any log.
    secrets: Mutex<Vec<String>>,
    requests: std::sync::atomic::AtomicUsize,
    http: Http,
    pub demo: Demo,
    /// The development certificate the server presents, when it serves HTTPS with one.
    pub cacert: Option<PathBuf>,
    /// The shared store it runs on, if not the embedded one.
    database_url: Option<String>,
    _running: Running,
}

/// The demo credentials from `demo.env`.
#[derive(Clone, Debug, Default)]
pub struct Demo {
    pub isv_id: String,
    pub isv_key: String,
    pub isv_key2: String,
    pub client_id: String,
    pub client_key: String,
    pub client_key2: String,
}

/// An HTTP(S) client for one base URL.
pub struct Http {
    url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A TLS client that trusts only the certificates in `cacert` (as `curl --cacert`).
pub fn tls_client(cacert: &Path) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(cacert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

impl Http {
    /// A client for a plain HTTP URL.
    pub fn new(url: &str) -> Http {
        Self::trusting(url, None)
    }

    /// A client that trusts the certificates in `cacert` for an HTTPS URL.
    pub fn trusting(url: &str, cacert: Option<&Path>) -> Http {
        let config = match cacert {
            Some(path) => tls_client(path),
            // No certificate is trusted: only plain HTTP URLs work.
            None => tls_client_trusting_nothing(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Http {
            url: url.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.try_request(method, path_and_query, headers, body)
            .await
            .unwrap_or_else(|| panic!("{method} {path_and_query}: no answer from {}", self.url))
    }
}

impl Http {
    /// Like `request`, but `None` when the server is gone (connection refused or reset).
    pub async fn try_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<Answer> {
        self.send(method, path_and_query, headers, body.as_bytes().to_vec())
            .await
    }

    /// Like `try_request`, with a body of any bytes (an image).
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Option<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.url));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = self
            .client
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .ok()?;
        let status = res.status();
        let headers = res.headers().clone();
        let body =
            String::from_utf8(res.into_body().collect().await.ok()?.to_bytes().to_vec()).ok()?;
        Some(Answer {
            status,
            headers,
            body,
        })
    }
}

fn tls_client_trusting_nothing() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth()
}

/// Sends `request` as it is over a new connection (TLS when `url` is https) and reads until the
/// server closes it: for requests a client library would not send as they are.
pub async fn raw_exchange(url: &str, cacert: Option<&Path>, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tls, addr) = match url.strip_prefix("https://") {
        Some(addr) => (true, addr),
        None => (false, url.trim_start_matches("http://")),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    if tls {
        let config = tls_client(cacert.expect("a certificate to trust"));
        let host = addr.rsplit_once(':').unwrap().0.to_owned();
        let name = rustls_pki_types::ServerName::try_from(host).unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let _ = stream.read_to_end(&mut out).await;
    } else {
        let mut stream = tcp;
        stream.write_all(request.as_bytes()).await.unwrap();
        let _ = stream.read_to_end(&mut out).await;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub use latch_testkit::Answer;

impl Server {
    /// Starts the services in this process with the demo bootstrap, logging at `trace`.
    pub async fn start() -> Server {
        let running = Running::count(None);
        let dir = tempfile::tempdir().unwrap();
        let database_url = crate::database::for_folder(dir.path()).await;
        let in_process = InProcess::start(&dir.path().join("data"), database_url.clone()).await;
        let [sts, face, admin] = in_process.addrs.map(|a| format!("https://{a}"));
        let mut server = Self::ready(dir, running, database_url, [sts, face, admin]);
        server.in_process = Some(in_process);
        server
    }

    /// Starts a `latch serve` process with the demo bootstrap, logging at `trace`.
    pub async fn process() -> Server {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Server {
        Self::start_full(extra, &[]).await
    }

    /// Starts a server with extra arguments and environment variables.
    pub async fn start_full(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::launch(tempfile::tempdir().unwrap(), extra, env).await
    }

    /// Kills the server with SIGKILL (no shutdown, no flush) and starts a new one on the same
    /// data directory.
    pub async fn kill_and_restart(mut self) -> Server {
        let mut child = self.take_child();
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        let dir = tempfile::TempDir::new().unwrap();
        let old = std::mem::replace(&mut self.dir, dir);
        Self::launch(old, &[], &[]).await
    }

    /// Kills the server with SIGKILL and returns its folder (the data directory is `data`
    /// inside), to be looked at, changed, and started again with [`Server::resume`].
    pub fn kill_9(mut self) -> tempfile::TempDir {
        let mut child = self.take_child();
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        std::mem::replace(&mut self.dir, tempfile::TempDir::new().unwrap())
    }

    /// Starts a server on the folder a stopped one left.
    pub async fn resume(dir: tempfile::TempDir) -> Server {
        Self::launch(dir, &[], &[]).await
    }

    /// Runs `latch serve` on the data directory in `dir` when it must refuse to start: its exit
    /// status and standard error (a server that starts instead is stopped, and says so).
    pub fn refused_start(dir: &std::path::Path) -> (Option<std::process::ExitStatus>, String) {
        let log = dir.join("refused-start.log");
        let mut child = serve(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let status = wait_for(&mut child, Duration::from_secs(20));
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// Stops the server (SIGTERM) and starts a new one on the same data directory with `extra`.
    pub async fn restart_with(mut self, extra: &[&str]) -> Server {
        let mut child = self.take_child();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = wait_for(&mut child, Duration::from_secs(20));
        let dir = tempfile::TempDir::new().unwrap();
        let old = std::mem::replace(&mut self.dir, dir);
        Self::launch(old, extra, &[]).await
    }

    async fn launch(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let running = Running::count(None);
        Self::launch_counted(running, dir, extra, env).await
    }

    /// Launches a server already counted as running.
    async fn launch_counted(
        running: Running,
        dir: tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let stderr_path = dir.path().join(format!(
            "stderr-{}.log",
            std::process::id() as u64 * 1000
                + dir.path().read_dir().map(|d| d.count()).unwrap_or(0) as u64
        ));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let database_url = match env.iter().find(|(k, _)| *k == "LATCH_DATABASE_URL") {
            Some((_, url)) => Some((*url).to_owned()),
            None => crate::database::for_folder(dir.path()).await,
        };
        let mut child = serve(dir.path())
            .args(extra)
            .env("LATCH_LOG", "trace")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                for (service, prefix) in [
                    ("sts", "latch: STS listening on "),
                    ("face", "latch: Face front listening on "),
                    ("admin", "latch: admin API listening on "),
                ] {
                    if let Some(url) = line.strip_prefix(prefix) {
                        let _ = tx.send((service, url.to_owned()));
                    }
                }
                if line == "latch: ready" {
                    let _ = tx.send(("ready", String::new()));
                }
            }
        });
        let (mut url, mut face_url, mut admin_url) = (String::new(), String::new(), String::new());
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(("sts", u)) => url = u,
                Ok(("face", u)) => face_url = u,
                Ok(("admin", u)) => admin_url = u,
                Ok(_) => break,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "server did not start: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        }
        let mut server = Self::ready(dir, running, database_url, [url, face_url, admin_url]);
        server.child = Some(child);
        server.stdout = stdout;
        server.stderr_path = stderr_path;
        server
    }

    /// A server that has started, with the credentials it wrote, and every secret among them
    /// remembered.
    fn ready(
        dir: tempfile::TempDir,
        running: Running,
        database_url: Option<String>,
        [url, face_url, admin_url]: [String; 3],
    ) -> Server {
        let demo = read_demo(&dir.path().join("data").join("demo.env"));
        let dir_path = dir.path().to_owned();
        let cacert = Some(dir_path.join("data").join("tls").join("dev-cert.pem"))
            .filter(|p| url.starts_with("https://") && p.exists());
        let server = Server {
            child: None,
            in_process: None,
            dir,
            url: url.clone(),
            face_url,
            admin_url,
            operator_token: env_value(&dir_path.join("data").join("admin.env"), "OPERATOR_TOKEN"),
            auditor_token: env_value(&dir_path.join("data").join("admin.env"), "AUDITOR_TOKEN"),
            stdout: Arc::default(),
            stderr_path: PathBuf::new(),
            secrets: Mutex::new(Vec::new()),
            requests: std::sync::atomic::AtomicUsize::new(0),
            http: Http::trusting(&url, cacert.as_deref()),
            demo: demo.clone(),
            cacert,
            database_url,
            _running: running,
        };
        // The development certificate's private key, line by line, is a secret too.
        let dev_key =
            std::fs::read_to_string(dir_path.join("data").join("tls").join("dev-key.pem"))
                .unwrap_or_default();
        for line in dev_key.lines().filter(|l| !l.starts_with("-----")) {
            server.secret(line);
        }
        for s in [
            &demo.isv_key,
            &demo.isv_key2,
            &demo.client_key,
            &demo.client_key2,
            &server.operator_token,
            &server.auditor_token,
        ] {
            if !s.is_empty() {
                server.secret(s);
            }
        }
        server
    }

    /// The `latch serve` process; a test that needs one starts it with [`Server::process`].
    fn child(&self) -> &Child {
        self.child
            .as_ref()
            .expect("this test needs a server process: start it with Server::process()")
    }

    fn take_child(&mut self) -> Child {
        self.child
            .take()
            .expect("this test needs a server process: start it with Server::process()")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Sends a signal (`-HUP`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child().id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What the server printed on standard output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What the server logged so far (in this process: what every in-process server logged).
    pub fn stderr(&self) -> String {
        match &self.in_process {
            Some(_) => crate::in_process::log(),
            None => std::fs::read_to_string(&self.stderr_path).unwrap_or_default(),
        }
    }

    /// A client for one of this server's URLs, trusting its certificate.
    pub fn client(&self, url: &str) -> Http {
        Http::trusting(url, self.cacert.as_deref())
    }

    /// `python3`, trusting this server's certificate (`requests` and `urllib` alike).
    pub fn python(&self) -> Command {
        let mut command = Command::new("python3");
        if let Some(cacert) = &self.cacert {
            command
                .env("SSL_CERT_FILE", cacert)
                .env("REQUESTS_CA_BUNDLE", cacert);
        }
        command
    }

    /// Runs `tests/interop/{script}` with `args` under [`Server::python`], off the runtime's
    /// threads (a server the script calls may run on them); what it printed, as JSON.
    pub async fn run_interop(&self, script: &str, args: Vec<String>) -> Value {
        let path = format!(
            "{}/../../tests/interop/{script}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut python = self.python();
        let out = tokio::task::spawn_blocking(move || python.arg(path).args(args).output())
            .await
            .unwrap()
            .expect("python3 runs (pip install -r tests/requirements.txt)");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A value of this server's `demo.env`.
    pub fn demo_value(&self, name: &str) -> String {
        let value = env_value(&self.data_dir().join("demo.env"), name);
        assert!(!value.is_empty(), "demo.env has no {name}");
        value
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Remembers a secret, to be searched for in the logs at the end.
    pub fn secret(&self, s: &str) {
        self.secrets.lock().unwrap().push(s.to_owned());
    }

    /// Counts requests that carry a subscription key, whose value the log must not show.
    fn count_keyed(&self, headers: &[(&str, &str)]) {
        if headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("ocp-apim-subscription-key"))
        {
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A request to the STS; a token in the answer is remembered as a secret.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.count_keyed(headers);
        let answer = self
            .http
            .request(method, path_and_query, headers, body)
            .await;
        if answer
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/jwt")
        {
            self.secret(&answer.body);
        }
        answer
    }

    /// A request to the Face front.
    pub async fn face(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.count_keyed(headers);
        self.client(&self.face_url)
            .request(method, path_and_query, headers, body)
            .await
    }

    /// `POST /sts/v1.0/issueLimitedAccessToken{query}` with a key and a body.
    pub async fn issue(&self, key: Option<&str>, query: &str, body: &str) -> Answer {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(k) = key {
            headers.push(("Ocp-Apim-Subscription-Key", k));
        }
        self.request(
            "POST",
            &format!("/sts/v1.0/issueLimitedAccessToken{query}"),
            &headers,
            body,
        )
        .await
    }

    /// A limited access token the demo ISV issues for the demo client, with `flags`, for 600 s.
    pub async fn demo_token(&self, flags: &[&str]) -> String {
        let d = &self.demo;
        let a = self
            .issue(
                Some(&d.isv_key),
                "?expiredTime=600",
                &lat_body(&d.client_id, flags),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    /// A request to the admin API.
    pub async fn admin(
        &self,
        op: &str,
        credential: (&str, &str),
        body: serde_json::Value,
    ) -> Answer {
        self.client(&self.admin_url)
            .request(
                "POST",
                &format!("/admin/v1/{op}"),
                &[credential, ("content-type", "application/json")],
                &body.to_string(),
            )
            .await
    }

    /// Runs a `latch` admin command against this server's data directory (and its database,
    /// when it runs on PostgreSQL).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env_remove("LATCH_CONFIG")
            .env_remove("LATCH_LOG")
            .envs(self.cacert.iter().map(|c| ("LATCH_CACERT", c)))
            .envs(self.database_url.iter().map(|u| ("LATCH_DATABASE_URL", u)))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // A change made by another process reaches a server on PostgreSQL once its checks read
        // the state version again: within `store.recheck_ms` (100 ms by default; the embedded
        // store's 1 ms is below what a test can see).
        if self.database_url.is_some() {
            std::thread::sleep(Duration::from_millis(150));
        }
        // Whatever it logged (standard error) is a log too.
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.stdout
            .lock()
            .unwrap()
            .push_str(&format!("\n[cli stderr]\n{stderr}"));
        out
    }

    /// The store the server runs on, opened as another process would.
    pub async fn store(&self) -> std::sync::Arc<dyn Store> {
        let rng = ring::rand::SystemRandom::new();
        match &self.database_url {
            Some(url) => std::sync::Arc::new(
                latch_store::postgres::PgStore::connect(url, "e2e-reader", &rng)
                    .await
                    .unwrap(),
            ),
            None => std::sync::Arc::new(
                SqliteStore::open(&self.data_dir(), "e2e-reader", &rng).unwrap(),
            ),
        }
    }

    /// Every audit record's body, every chain, oldest first within each.
    async fn audit_bodies(&self) -> Vec<String> {
        let store = self.store().await;
        let mut out = Vec::new();
        for chain in store.audit_chains().await.unwrap() {
            for r in store.audit_records(&chain, 0, 1_000_000).await.unwrap() {
                out.push(r.body);
            }
        }
        out
    }

    /// The `jti` of every token the audit log says was issued.
    pub async fn issued_jtis(&self) -> std::collections::BTreeSet<String> {
        self.audit()
            .await
            .into_iter()
            .filter_map(|r| match r.event {
                latch_core::audit::AuditEvent::LimitedAccessTokenIssued { jti, .. } => Some(jti),
                _ => None,
            })
            .collect()
    }

    /// The audit records the store holds, parsed.
    pub async fn audit(&self) -> Vec<latch_core::audit::SealedRecord> {
        self.audit_bodies()
            .await
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }

    /// Stops the server (SIGTERM, graceful) and checks that no secret reached its output or
    /// its audit records.
    pub async fn finish(mut self) {
        let audit = self.audit_bodies().await.join("\n");
        let stderr = match self.in_process.take() {
            // Once its thread has ended, its writers have committed every record.
            Some(mut server) => {
                let stopped = tokio::task::spawn_blocking(move || server.stop())
                    .await
                    .unwrap();
                assert!(stopped, "the in-process server did not stop cleanly");
                crate::in_process::log()
            }
            None => {
                let mut child = self.take_child();
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                let status = wait_for(&mut child, Duration::from_secs(20));
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap();
                assert!(
                    status.is_some_and(|s| s.success()),
                    "server did not stop cleanly: {status:?}\n{stderr}"
                );
                assert!(
                    stderr.contains("every audit record is committed"),
                    "{stderr}"
                );
                stderr
            }
        };
        let stdout = self.stdout.lock().unwrap().clone();
        if self.requests.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            // Request headers are logged at trace level, with the secret ones marked sensitive.
            assert!(
                stderr.contains("request headers"),
                "logging ran at trace level"
            );
            assert!(
                stderr.contains(r#""ocp-apim-subscription-key": "<not logged>""#),
                "the key header was seen and its value not logged"
            );
        }
        let secrets = self.secrets.lock().unwrap().clone();
        assert!(!secrets.is_empty());
        for secret in secrets.iter() {
            // A token's signature alone would be as bad as the token: search for both.
            let needles = [secret.as_str(), secret.rsplit('.').next().unwrap_or(secret)];
            for needle in needles {
                assert!(
                    !stderr.contains(needle),
                    "a secret appeared in the server's log"
                );
                assert!(
                    !stdout.contains(needle),
                    "a secret appeared on the server's standard output"
                );
                assert!(
                    !audit.contains(needle),
                    "a secret appeared in an audit record"
                );
            }
        }
        crate::database::forget_folder(self.dir.path()).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `latch serve` on loopback ports chosen by the system, on the data directory in `dir`.
/// Most tests see an allowed call as the 501 of a front without a backend; the engine's own
/// tests turn the engine on.
fn serve(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args([
            "serve",
            "--sts-listen",
            "127.0.0.1:0",
            "--face-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("LATCH_FACE_ENGINE", "off")
        .env_remove("LATCH_CONFIG");
    if let Some(url) = crate::database::folder_url(dir) {
        command.env("LATCH_DATABASE_URL", url);
    }
    command
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

fn env_value(path: &Path, name: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

fn read_demo(path: &Path) -> Demo {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Demo::default();
    };
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    Demo {
        isv_id: get("ISV_RESOURCE_ID"),
        isv_key: get("ISV_KEY"),
        isv_key2: get("ISV_KEY2"),
        client_id: get("CLIENT_RESOURCE_ID"),
        client_key: get("CLIENT_KEY"),
        client_key2: get("CLIENT_KEY2"),
    }
}

/// Polls `check` until it holds, or fails the test with `what` after `limit`; how long that
/// took.
pub async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A limited access token request body.
pub fn lat_body(target: &str, flags: &[&str]) -> String {
    serde_json::json!({ "targetAzureResourceId": target, "featureFlags": flags }).to_string()
}

/// The `jti` claim of a token (read, not verified).
pub fn jti(token: &str) -> String {
    let claims: serde_json::Value =
        serde_json::from_slice(&latch_core::jws::decode(token).unwrap().payload).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}
