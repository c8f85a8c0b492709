//! How much of a lease a deployment's child workloads may take: the arithmetic, pure.
//!
//! A lease grants memory, disk and CPU to one deployment; its children are carved out of it,
//! never on top of it. With `C` the live children's limits (the new one included):
//!
//! - **memory**: `Σ C.mem + what the parent's instance holds now ≤ lease mem`; the parent's
//!   own memory cap becomes `lease mem − Σ C.mem` (its worker's instances share a budget whose
//!   cap the supervisor lowers as children start and raises as they stop, and so does the
//!   budget its HTTP instances share; "what the parent holds" is the larger of the two);
//! - **key-value store**: `Σ C.kv + what the parent's store holds now ≤ lease disk`; the
//!   parent's quota becomes `lease disk − Σ C.kv`;
//! - **CPU**: the lease is worth `cpu_millis × plugin.fuel_per_cpu_milli` fuel per second;
//!   `Σ C.fuel ≤` that minus the parent's reserve, a tenth of it ([`PARENT_FUEL_RESERVE`]),
//!   so that the parent always has CPU to manage its children.
//!
//! Past any of them the start is refused with what is left (`insufficient-capacity`).

use crate::plugin::control::ChildLimits;
use crate::plugin::runtime::LeaseInfo;

/// The share of the lease's fuel per second that stays the parent's: one part in this many.
pub(crate) const PARENT_FUEL_RESERVE: u64 = 10;

/// What a lease grants, in the units children's limits use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseShare {
    pub(crate) mem_bytes: u64,
    pub(crate) disk_bytes: u64,
    /// Fuel per second.
    pub(crate) fuel_per_second: u64,
}

impl LeaseShare {
    pub(crate) fn of(info: &LeaseInfo, fuel_per_cpu_milli: u64) -> Self {
        Self {
            mem_bytes: info.slice.mem_bytes,
            disk_bytes: info.slice.disk_bytes,
            fuel_per_second: info.slice.cpu_millis.saturating_mul(fuel_per_cpu_milli),
        }
    }

    /// Fuel per second the children together may have.
    pub(crate) fn children_fuel(&self) -> u64 {
        self.fuel_per_second - self.fuel_per_second / PARENT_FUEL_RESERVE
    }
}

/// The parent's shares once the children are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParentShare {
    pub(crate) mem_cap: u64,
    pub(crate) kv_quota: u64,
}

/// The sum of children's limits (saturating).
pub(crate) fn total(children: &[ChildLimits]) -> ChildLimits {
    children
        .iter()
        .fold(ChildLimits::default(), |a, c| ChildLimits {
            mem_bytes: a.mem_bytes.saturating_add(c.mem_bytes),
            fuel_per_second: a.fuel_per_second.saturating_add(c.fuel_per_second),
            kv_bytes: a.kv_bytes.saturating_add(c.kv_bytes),
        })
}

/// The parent's shares with these children (never below zero: a lease whose children take
/// all leaves the parent nothing more to grow).
pub(crate) fn parent_share(lease: &LeaseShare, children: &[ChildLimits]) -> ParentShare {
    let t = total(children);
    ParentShare {
        mem_cap: lease.mem_bytes.saturating_sub(t.mem_bytes),
        kv_quota: lease.disk_bytes.saturating_sub(t.kv_bytes),
    }
}

fn mib(b: u64) -> String {
    crate::capacity::units::format_size(b)
}

/// Whether `new` fits beside `children` and what the parent uses now; the parent's shares
/// after it, or a sentence saying what is left.
pub(crate) fn admit(
    lease: &LeaseShare,
    children: &[ChildLimits],
    parent_mem_used: u64,
    parent_kv_used: u64,
    new: ChildLimits,
) -> Result<ParentShare, String> {
    let t = total(children);
    let mem_left = lease
        .mem_bytes
        .saturating_sub(t.mem_bytes)
        .saturating_sub(parent_mem_used);
    if new.mem_bytes > mem_left {
        return Err(format!(
            "memory: {} asked, {} left (lease {}, children {}, parent uses {})",
            mib(new.mem_bytes),
            mib(mem_left),
            mib(lease.mem_bytes),
            mib(t.mem_bytes),
            mib(parent_mem_used)
        ));
    }
    let kv_left = lease
        .disk_bytes
        .saturating_sub(t.kv_bytes)
        .saturating_sub(parent_kv_used);
    if new.kv_bytes > kv_left {
        return Err(format!(
            "kv: {} asked, {} left (lease disk {}, children {}, parent's store {})",
            mib(new.kv_bytes),
            mib(kv_left),
            mib(lease.disk_bytes),
            mib(t.kv_bytes),
            mib(parent_kv_used)
        ));
    }
    let fuel_left = lease.children_fuel().saturating_sub(t.fuel_per_second);
    if new.fuel_per_second > fuel_left {
        return Err(format!(
            "fuel: {} per second asked, {} left (lease {} per second, a tenth kept for the parent, children {})",
            new.fuel_per_second, fuel_left, lease.fuel_per_second, t.fuel_per_second
        ));
    }
    let mut all = children.to_vec();
    all.push(new);
    Ok(parent_share(lease, &all))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LEASE: LeaseShare = LeaseShare {
        mem_bytes: 128 << 20,
        disk_bytes: 10 << 20,
        fuel_per_second: 1_000_000_000,
    };

    fn c(mem_mib: u64, fuel: u64, kv_kib: u64) -> ChildLimits {
        ChildLimits {
            mem_bytes: mem_mib << 20,
            fuel_per_second: fuel,
            kv_bytes: kv_kib << 10,
        }
    }

    #[test]
    fn children_fit_until_the_lease_is_taken() {
        let one = admit(&LEASE, &[], 16 << 20, 0, c(64, 100, 0));
        assert_eq!(
            one,
            Ok(ParentShare {
                mem_cap: 64 << 20,
                kv_quota: 10 << 20
            })
        );
        let err = admit(&LEASE, &[c(64, 100, 0)], 16 << 20, 0, c(64, 100, 0));
        assert!(
            err.as_ref().is_err_and(|e| e.starts_with("memory:")),
            "{err:?}"
        );
        let err = admit(&LEASE, &[], 0, 9 << 20, c(1, 1, 2048));
        assert!(err.as_ref().is_err_and(|e| e.starts_with("kv:")), "{err:?}");
        let err = admit(&LEASE, &[], 0, 0, c(1, 900_000_001, 0));
        assert!(
            err.as_ref().is_err_and(|e| e.starts_with("fuel:")),
            "{err:?}"
        );
        assert!(admit(&LEASE, &[], 0, 0, c(1, 900_000_000, 0)).is_ok());
    }

    proptest! {
        /// Whatever is asked, in whatever order, what is admitted plus what the parent uses
        /// never exceeds the lease, and the parent's shares are what the children leave.
        #[test]
        fn admitted_children_never_exceed_the_lease(
            asks in proptest::collection::vec((0u64..80 << 20, 0u64..600_000_000, 0u64..6 << 20), 0..24),
            parent_mem in 0u64..(128 << 20),
            parent_kv in 0u64..(10 << 20),
        ) {
            let mut admitted: Vec<ChildLimits> = Vec::new();
            for (mem, fuel, kv) in asks {
                let new = ChildLimits { mem_bytes: mem, fuel_per_second: fuel, kv_bytes: kv };
                if let Ok(share) = admit(&LEASE, &admitted, parent_mem, parent_kv, new) {
                    admitted.push(new);
                    let t = total(&admitted);
                    prop_assert!(t.mem_bytes + parent_mem <= LEASE.mem_bytes);
                    prop_assert!(t.kv_bytes + parent_kv <= LEASE.disk_bytes);
                    prop_assert!(t.fuel_per_second <= LEASE.children_fuel());
                    prop_assert_eq!(share.mem_cap + t.mem_bytes, LEASE.mem_bytes);
                    prop_assert_eq!(share.kv_quota + t.kv_bytes, LEASE.disk_bytes);
                    prop_assert!(share.mem_cap >= parent_mem);
                }
            }
        }
    }
}
