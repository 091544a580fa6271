//! The client's keep-alive pool: idle connections per (scheme, host, port),
//! most recently used first, with a cap per host, a cap in all, and an age
//! past which a connection is closed rather than reused.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::conn::Conn;

/// Which connections can serve a request: `(https, host, port)`.
pub(crate) type Key = (bool, String, u16);

pub(crate) struct KeepAlive {
    per_host: usize,
    total: usize,
    max_age: Duration,
    idle: RefCell<HashMap<Key, Vec<Conn>>>,
    count: Cell<usize>,
}

impl KeepAlive {
    pub(crate) fn new(per_host: usize, total: usize, max_age: Duration) -> Self {
        KeepAlive {
            per_host,
            total,
            max_age,
            idle: RefCell::new(HashMap::new()),
            count: Cell::new(0),
        }
    }

    /// The most recently used idle connection for `key` that is not too old.
    pub(crate) fn take(&self, key: &Key) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(key)?;
        let conn = conns.pop();
        let fresh = conn.filter(|c| c.idle_since.elapsed() < self.max_age);
        if fresh.is_none() {
            // The rest are older still.
            conns.clear();
        }
        if conns.is_empty() {
            idle.remove(key);
        }
        self.recount(&idle);
        fresh
    }

    /// Keeps `conn` for the next request to `key`, closing the oldest idle
    /// connection when a cap is reached.
    pub(crate) fn put(&self, key: Key, mut conn: Conn) {
        if self.per_host == 0 || self.total == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if self.count.get() >= self.total {
            let now = Instant::now();
            idle.retain(|_, conns| {
                conns.retain(|c| now.duration_since(c.idle_since) < self.max_age);
                !conns.is_empty()
            });
            self.recount(&idle);
            if self.count.get() >= self.total {
                let oldest = idle
                    .iter()
                    .min_by_key(|(_, conns)| conns[0].idle_since)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    let conns = idle.get_mut(&k).expect("key just found");
                    conns.remove(0);
                    if conns.is_empty() {
                        idle.remove(&k);
                    }
                }
            }
        }
        let conns = idle.entry(key).or_default();
        if conns.len() >= self.per_host {
            conns.remove(0);
        }
        conn.idle_since = Instant::now();
        conns.push(conn);
        self.recount(&idle);
    }

    /// Idle connections held now.
    pub(crate) fn len(&self) -> usize {
        self.count.get()
    }

    fn recount(&self, idle: &HashMap<Key, Vec<Conn>>) {
        self.count.set(idle.values().map(Vec::len).sum());
    }
}
