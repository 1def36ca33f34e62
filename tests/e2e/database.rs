//! The machine's PostgreSQL, for the tests of many replicas and for the second pass of the whole
//! suite: with `LATCH_E2E_STORE=postgres`, every server a test starts (and every command it
//! runs) uses a schema of its own there instead of the embedded store, and the tests that are
//! about the embedded store's own files say they do not apply.

use std::path::Path;

/// Whether this run puts every server on PostgreSQL (`LATCH_E2E_STORE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("LATCH_E2E_STORE").is_ok_and(|v| v == "postgres")
}

/// In a PostgreSQL run, says so and returns true for a test that works through the embedded
/// store's own files (`why`: its journal's bytes, its data directory on a small disk), which a
/// server on PostgreSQL does not have. Each such guarantee has its PostgreSQL counterpart in the
/// store suite or in `replicas.rs`.
pub fn embedded_only(test: &str, why: &str) -> bool {
    if on_postgres() {
        eprintln!("{test}: works through {why}; not run on PostgreSQL");
    }
    on_postgres()
}

/// Where a test folder keeps the schema its servers share in a PostgreSQL run.
const FOLDER_FILE: &str = "database-schema";

/// In a PostgreSQL run, the database URL of the servers of folder `dir`: a schema made for it
/// when its first server starts, kept (its name in the folder) for the servers that follow.
pub async fn for_folder(dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    if let Some(url) = folder_url(dir) {
        return Some(url);
    }
    let database = Database::new().await;
    std::fs::write(dir.join(FOLDER_FILE), &database.schema).unwrap();
    Some(database.url())
}

/// The database URL of folder `dir`, once [`for_folder`] has made its schema.
pub fn folder_url(dir: &Path) -> Option<String> {
    of_folder(dir).map(|database| database.url())
}

/// Drops the schema of folder `dir`, if it has one.
pub async fn forget_folder(dir: &Path) {
    if let Some(database) = of_folder(dir) {
        database.drop().await;
        let _ = std::fs::remove_file(dir.join(FOLDER_FILE));
    }
}

/// The schema folder `dir` keeps, if [`for_folder`] made one.
fn of_folder(dir: &Path) -> Option<Database> {
    let schema = std::fs::read_to_string(dir.join(FOLDER_FILE)).ok()?;
    Some(Database {
        base: base(),
        schema,
    })
}

fn base() -> String {
    std::env::var("LATCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A schema of its own on the machine's PostgreSQL, dropped at the end: the database URL the
/// replicas share.
pub struct Database {
    base: String,
    schema: String,
}

impl Database {
    pub async fn new() -> Database {
        let base = base();
        // One per test: tests of one binary run at once.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema = format!("latch_e2e_{}_{n}", std::process::id());
        let client = connect(&base).await;
        if n == 0 {
            drop_left_behind(&client).await;
        }
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap();
        Database { base, schema }
    }

    pub fn url(&self) -> String {
        format!("{} options='-c search_path={}'", self.base, self.schema)
    }

    /// The database server's address.
    pub fn address(&self) -> std::net::SocketAddr {
        use std::net::ToSocketAddrs;
        let value = |key: &str| {
            self.base
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
        };
        let host = value("host=").unwrap_or("127.0.0.1");
        let port = value("port=").unwrap_or("5432");
        (host, port.parse::<u16>().unwrap())
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap()
    }

    /// The URL of this schema, reached through `proxy` instead of the server's own address.
    pub fn url_through(&self, proxy: std::net::SocketAddr) -> String {
        let rest: Vec<&str> = self
            .base
            .split_whitespace()
            .filter(|kv| !kv.starts_with("host=") && !kv.starts_with("port="))
            .collect();
        format!(
            "{} host={} port={} options='-c search_path={}'",
            rest.join(" "),
            proxy.ip(),
            proxy.port(),
            self.schema
        )
    }

    pub async fn drop(self) {
        connect(&self.base)
            .await
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .unwrap();
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at '{url}' (LATCH_TEST_DATABASE_URL): {e}"));
    tokio::spawn(connection);
    client
}

/// Drops the schemas of test processes that are gone: a test that failed, or stopped its
/// servers without [`crate::harness::Server::finish`], leaves its schema behind.
async fn drop_left_behind(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'latch\\_e2e\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let schema: String = row.get(0);
        let pid = schema.split('_').nth(2).unwrap_or_default();
        if !Path::new("/proc").join(pid).exists() {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
    }
}
