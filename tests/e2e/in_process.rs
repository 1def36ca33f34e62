//! The services run in this test process, through `latch::server`, on a thread and a runtime
//! of their own (so a test that blocks its own thread, e.g. on a `latch` command that calls the
//! admin API, blocks nothing of theirs). What they log, at `trace`, goes to one log shared by
//! every such server of this process, which `finish` searches for the test's secrets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use latch::cli::Role;
use latch::config::{Config, Overrides};
use latch::server::{self, Listeners};

/// What every in-process server logged so far.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the log, once: the filter `latch serve` runs with at `trace`, with the HTTP and
/// runtime libraries' own tracing held to `info` (what they trace is not the services').
fn install_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut filter = latch::logging::filter("trace").unwrap();
        for quieter in [
            "hyper=info",
            "hyper_util=info",
            "h2=info",
            "tokio=info",
            "runtime=info",
        ] {
            filter = filter.add_directive(quieter.parse().unwrap());
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// The shared log, as text.
pub fn log() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// A running in-process server.
pub struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where the STS, the Face front and the admin API listen.
    pub addrs: [SocketAddr; 3],
}

impl InProcess {
    /// Starts the STS, the Face front and the admin API on loopback ports chosen by the system,
    /// on the data directory `data` (and `database_url`, when given): as `latch serve` with
    /// `LATCH_FACE_ENGINE=off` does. Returns once they answer.
    pub async fn start(data: &Path, database_url: Option<String>) -> InProcess {
        install_log();
        let any_port = || Some("127.0.0.1:0".to_owned());
        let config = Config::load(
            None,
            Overrides {
                data_dir: Some(data.to_owned()),
                sts_listen: any_port(),
                face_listen: any_port(),
                admin_listen: any_port(),
                face_engine: Some("off".into()),
                database_url,
                ..Overrides::default()
            },
        )
        .unwrap();
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let addrs = |l: &Listeners| {
                    [&l.sts, &l.face, &l.admin].map(|l| l.as_ref().unwrap().local_addr().unwrap())
                };
                let listeners = Listeners::bind(&config, Role::All).await.unwrap();
                let bound = addrs(&listeners);
                match server::start(config, listeners).await {
                    Ok(started) => {
                        let _ = ready.send(Ok(bound));
                        started
                            .serve(async {
                                let _ = stopped.await;
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                    }
                }
            });
        });
        let addrs =
            tokio::task::spawn_blocking(move || started.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("the server starts within a minute")
                .unwrap_or_else(|e| panic!("server did not start: {e}"));
        InProcess {
            stop: Some(stop),
            thread: Some(thread),
            addrs,
        }
    }

    /// Stops it gracefully (as SIGTERM stops `latch serve`) and waits until every audit record
    /// is committed; whether it stopped cleanly.
    pub fn stop(&mut self) -> bool {
        drop(self.stop.take());
        self.thread.take().is_none_or(|t| t.join().is_ok())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
