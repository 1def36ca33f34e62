//! The PostgreSQL store's connections: a fixed pool of them, each opened on first use and
//! replaced once found closed, and transactions begun on one.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::{Client, Transaction};

use super::{pg, tls, unavailable, POOL_SIZE};
use crate::Result;

/// A fixed set of connections, each opened on first use and reopened after it breaks.
pub(super) struct Pool {
    pub(super) config: tokio_postgres::Config,
    tls: tls::RustlsConnect,
    slots: Vec<tokio::sync::Mutex<Option<Client>>>,
    next: AtomicUsize,
}

/// A connection taken from the pool, given back when dropped.
pub(super) struct Pooled<'a>(tokio::sync::MutexGuard<'a, Option<Client>>);

impl Pooled<'_> {
    pub(super) fn client(&self) -> Result<&Client> {
        self.0.as_ref().ok_or_else(|| unavailable("no connection"))
    }

    pub(super) fn client_mut(&mut self) -> Result<&mut Client> {
        self.0.as_mut().ok_or_else(|| unavailable("no connection"))
    }
}

impl Pool {
    pub(super) fn new(config: tokio_postgres::Config, tls: tls::RustlsConnect) -> Pool {
        Pool {
            config,
            tls,
            slots: (0..POOL_SIZE)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub(super) async fn get(&self) -> Result<Pooled<'_>> {
        // A free connection if there is one; otherwise wait for the next in turn.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = None;
        for i in 0..self.slots.len() {
            if let Ok(g) = self.slots[(start + i) % self.slots.len()].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.slots[start % self.slots.len()].lock().await,
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(pg)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(target: "latch::store", error = %e, "database connection lost");
                }
            });
            *guard = Some(client);
        }
        Ok(Pooled(guard))
    }
}

pub(super) async fn begin<'a>(conn: &'a mut Pooled<'_>) -> Result<Transaction<'a>> {
    conn.0
        .as_mut()
        .ok_or_else(|| unavailable("no connection"))?
        .transaction()
        .await
        .map_err(pg)
}
