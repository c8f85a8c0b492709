//! A deployment's idle HTTP instances, kept warm for the next request.
//!
//! Taking one is a pop under a mutex; an instance goes back only after a request that ended
//! cleanly (the call returned, the response was set and its body ended), at most `cap` are
//! kept, the most recently used is taken first (its memory is warm), and one idle longer than
//! `ttl`, or that has served `reuse` requests, is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::plugin::runtime::host::HostState;

/// One HTTP instance: its store and its bindings.
pub(crate) struct Slot {
    pub(crate) store: Store<HostState>,
    pub(crate) proxy: Proxy,
    /// Requests served so far.
    pub(crate) served: u64,
    idle_since: Instant,
    _alive: Alive,
}

/// One of the host's HTTP instance permits, and this deployment's count of live instances.
pub(crate) struct Alive {
    _permit: OwnedSemaphorePermit,
    count: Arc<AtomicU64>,
}

impl Alive {
    pub(crate) fn new(permit: OwnedSemaphorePermit, count: Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            count,
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slot {
    pub(crate) fn new(store: Store<HostState>, proxy: Proxy, alive: Alive) -> Self {
        Self {
            store,
            proxy,
            served: 0,
            idle_since: Instant::now(),
            _alive: alive,
        }
    }
}

/// Idle instances of one deployment.
pub(crate) struct Pool {
    idle: Mutex<Vec<Slot>>,
    cap: usize,
    ttl: Duration,
    reuse: u64,
}

impl Pool {
    pub(crate) fn new(cap: usize, ttl: Duration, reuse: u64) -> Self {
        Self {
            idle: Mutex::new(Vec::with_capacity(cap.min(64))),
            cap,
            ttl,
            reuse,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle instance still within its idle time.
    pub(crate) fn take(&self) -> Option<Slot> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.lock();
            loop {
                match idle.pop() {
                    None => break None,
                    Some(s) if now.saturating_duration_since(s.idle_since) > self.ttl => {
                        expired.push(s);
                    }
                    Some(s) => break Some(s),
                }
            }
        };
        // Stores are dropped outside the lock.
        drop(expired);
        found
    }

    /// Keeps an instance for a later request, unless it has served its share or the pool is
    /// full.
    pub(crate) fn put(&self, mut slot: Slot) {
        if slot.served >= self.reuse {
            return;
        }
        slot.idle_since = Instant::now();
        let mut idle = self.lock();
        if idle.len() < self.cap {
            idle.push(slot);
            return;
        }
        drop(idle);
        drop(slot);
    }

    /// Drops the instances idle past their time.
    pub(crate) fn reap(&self) {
        let now = Instant::now();
        let expired: Vec<Slot> = {
            let mut idle = self.lock();
            let (old, keep): (Vec<Slot>, Vec<Slot>) = idle
                .drain(..)
                .partition(|s| now.saturating_duration_since(s.idle_since) > self.ttl);
            *idle = keep;
            old
        };
        drop(expired);
    }

    /// Idle instances now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drops every idle instance.
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.lock());
        drop(all);
    }
}
