//! Metering: what each lease's deployments have used, for its signed usage receipts.
//!
//! Workers record after every call; the deploy path records the CPU time of compiling a
//! lease's component (a cache hit costs nothing); the lease sweeper takes the totals of a lease
//! when it signs a receipt. Fuel, compile CPU and peak memory are "since the last receipt";
//! storage is the key-value bytes held now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::resources::LeaseId;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Entry {
    fuel: u64,
    peak_mem: u64,
    storage: u64,
}

/// Usage of one lease over a receipt period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fuel: u64,
    pub peak_mem_bytes: u64,
    pub storage_bytes: u64,
    /// CPU time spent compiling the lease's components, in milliseconds.
    pub compile_cpu_ms: u64,
}

/// What one lease used: per deployment, and compiling (whatever deployment it was for, also
/// when the compilation failed).
#[derive(Debug, Default)]
struct LeaseUsage {
    deployments: HashMap<String, Entry>,
    compile_cpu_ms: u64,
}

/// Shared usage counters; cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    inner: Arc<Mutex<HashMap<LeaseId, LeaseUsage>>>,
}

impl Meter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseId, LeaseUsage>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the CPU time of compiling a component for a lease.
    pub fn compiled(&self, lease: LeaseId, cpu: std::time::Duration) {
        let ms = u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX);
        let mut map = self.lock();
        let u = map.entry(lease).or_default();
        u.compile_cpu_ms = u.compile_cpu_ms.saturating_add(ms);
    }

    /// Records a call of a deployment: fuel burnt, its memory now, its key-value bytes now.
    pub fn record(&self, lease: LeaseId, deployment: &str, fuel: u64, mem: u64, storage: u64) {
        let mut map = self.lock();
        let deployments = &mut map.entry(lease).or_default().deployments;
        // No key allocated on the hot path (every call, every HTTP request).
        let e = match deployments.get_mut(deployment) {
            Some(e) => e,
            None => deployments.entry(deployment.to_owned()).or_default(),
        };
        e.fuel = e.fuel.saturating_add(fuel);
        e.peak_mem = e.peak_mem.max(mem);
        e.storage = storage;
    }

    /// Forgets a stopped deployment's storage (its fuel so far is still reported).
    pub fn stopped(&self, lease: LeaseId, deployment: &str) {
        let mut map = self.lock();
        if let Some(e) = map
            .get_mut(&lease)
            .and_then(|m| m.deployments.get_mut(deployment))
        {
            e.storage = 0;
        }
    }

    /// The usage of a lease since the last take, summed over its deployments; resets fuel,
    /// compile CPU and peak memory.
    pub fn take(&self, lease: &LeaseId) -> Usage {
        let mut map = self.lock();
        let Some(lease) = map.get_mut(lease) else {
            return Usage::default();
        };
        let mut u = Usage {
            compile_cpu_ms: std::mem::take(&mut lease.compile_cpu_ms),
            ..Usage::default()
        };
        for e in lease.deployments.values_mut() {
            u.fuel = u.fuel.saturating_add(std::mem::take(&mut e.fuel));
            u.peak_mem_bytes = u
                .peak_mem_bytes
                .saturating_add(std::mem::take(&mut e.peak_mem));
            u.storage_bytes = u.storage_bytes.saturating_add(e.storage);
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_sums_deployments_and_resets_per_period() {
        let m = Meter::default();
        let lease = [1u8; 16];
        m.record(lease, "a", 100, 1 << 20, 10);
        m.record(lease, "a", 50, 2 << 20, 12);
        m.record(lease, "b", 1, 1 << 20, 5);
        m.compiled(lease, std::time::Duration::from_millis(1500));
        m.compiled(lease, std::time::Duration::from_micros(250_900));
        let u = m.take(&lease);
        assert_eq!(
            u,
            Usage {
                fuel: 151,
                peak_mem_bytes: 3 << 20,
                storage_bytes: 17,
                compile_cpu_ms: 1750,
            }
        );
        let again = m.take(&lease);
        assert_eq!(
            again,
            Usage {
                fuel: 0,
                peak_mem_bytes: 0,
                storage_bytes: 17,
                compile_cpu_ms: 0,
            }
        );
        m.stopped(lease, "a");
        assert_eq!(m.take(&lease).storage_bytes, 5);
        assert_eq!(m.take(&[9; 16]), Usage::default());
    }
}
