//! The ground floor: types every domain shares, and nothing else.
//!
//! - [`Resources`] is the one resource vector of the node: CPU in millicores, memory, disk and
//!   GPUs. It is generic over how GPUs are described: a host's inventory lists each GPU with its
//!   model and memory ([`Inventory`], `Resources<Vec<Gpu>>`), a lease slice counts them
//!   (`Resources<u32>`, the default). Both forms serialize exactly as the adverts and contracts
//!   signed before this type existed, so no signed byte changed.
//! - [`Prices`]: unit prices in micro-euros, the other half of a price computation.
//! - [`LeaseId`], [`DeploymentId`]: the ids that cross domains.
//! - [`now_ms`]: the wall clock every signed document and sweeper uses.
//!
//! Bandwidth is an attribute of a host (`bandwidth_bps` in its advert), not a leased
//! quantity: leases neither reserve nor meter it, so it is not part of the vector.
//!
//! Everything above depends on this module; it depends on nothing of the node.

use serde::{Deserialize, Serialize};

/// A lease id: 16 bytes, shown as 32 hex digits.
pub type LeaseId = [u8; 16];

/// A deployment id: 16 random bytes chosen by the tenant, shown as 32 hex digits.
pub type DeploymentId = [u8; 16];

/// Hex form of a 16-byte id.
pub fn id_hex(id: &[u8; 16]) -> String {
    hex::encode(id)
}

/// Parses a full 32-digit hex id.
pub fn parse_id(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A GPU model and its memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gpu {
    pub model: String,
    pub mem_bytes: u64,
}

/// How a resource vector describes its GPUs: counted, or listed one by one.
pub trait Gpus {
    /// How many GPUs.
    fn count(&self) -> u32;
}

impl Gpus for u32 {
    fn count(&self) -> u32 {
        *self
    }
}

impl Gpus for Vec<Gpu> {
    fn count(&self) -> u32 {
        u32::try_from(self.len()).unwrap_or(u32::MAX)
    }
}

/// An amount of hardware: CPU in thousandths of a core, bytes of memory and disk, and GPUs
/// (a count by default; see [`Inventory`] for the listed form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources<G = u32> {
    /// CPU in thousandths of a core.
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    /// A count, or one entry per GPU.
    pub gpus: G,
}

/// A host's hardware with each GPU described (what adverts carry as total and free).
pub type Inventory = Resources<Vec<Gpu>>;

impl Resources {
    /// Component-wise sum (saturating: amounts are validated long before they get near it).
    pub fn plus(&self, o: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            mem_bytes: self.mem_bytes.saturating_add(o.mem_bytes),
            disk_bytes: self.disk_bytes.saturating_add(o.disk_bytes),
            gpus: self.gpus.saturating_add(o.gpus),
        }
    }

    /// Component-wise difference, floored at zero.
    pub fn minus(&self, o: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis),
            mem_bytes: self.mem_bytes.saturating_sub(o.mem_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(o.disk_bytes),
            gpus: self.gpus.saturating_sub(o.gpus),
        }
    }

    /// Whether every component is at most `o`'s.
    pub fn fits_in(&self, o: &Resources) -> bool {
        self.cpu_millis <= o.cpu_millis
            && self.mem_bytes <= o.mem_bytes
            && self.disk_bytes <= o.disk_bytes
            && self.gpus <= o.gpus
    }

    /// Whether nothing at all is asked for.
    pub fn is_empty(&self) -> bool {
        self.cpu_millis == 0 && self.mem_bytes == 0 && self.disk_bytes == 0 && self.gpus == 0
    }

    /// Price of this amount per hour, in micro-euros, at `prices` (per core-hour, GiB-hour,
    /// GPU-hour). Rounded up, so that a host never undercharges by rounding.
    pub fn hourly_micros(&self, prices: &Prices) -> u64 {
        const GIB: u128 = 1 << 30;
        let cpu = u128::from(self.cpu_millis) * u128::from(prices.cpu);
        let mem = u128::from(self.mem_bytes) * u128::from(prices.mem);
        let disk = u128::from(self.disk_bytes) * u128::from(prices.disk);
        let total = cpu.div_ceil(1000)
            + mem.div_ceil(GIB)
            + disk.div_ceil(GIB)
            + u128::from(self.gpus) * u128::from(prices.gpu);
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

impl<G: Gpus> Resources<G> {
    /// The same amount with its GPUs counted.
    pub fn counted(&self) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis,
            mem_bytes: self.mem_bytes,
            disk_bytes: self.disk_bytes,
            gpus: self.gpus.count(),
        }
    }
}

impl Inventory {
    /// What is left once `taken` is taken (never below zero). Taken GPUs come off the end of
    /// the list.
    pub fn less(&self, taken: &Resources) -> Inventory {
        let keep = self
            .gpus
            .len()
            .saturating_sub(usize::try_from(taken.gpus).unwrap_or(usize::MAX));
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(taken.cpu_millis),
            mem_bytes: self.mem_bytes.saturating_sub(taken.mem_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(taken.disk_bytes),
            gpus: self.gpus[..keep].to_vec(),
        }
    }
}

/// Prices per unit-hour in micro-euros (1 EUR = 1,000,000), fixed-point so that what is signed
/// is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    /// Per core-hour.
    pub cpu: u64,
    /// Per GiB-hour of memory.
    pub mem: u64,
    /// Per GiB-hour of disk.
    pub disk: u64,
    /// Per GPU-hour.
    pub gpu: u64,
}

/// Micro-euros per euro.
pub const MICROS_PER_EUR: f64 = 1_000_000.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_keep_the_bytes_signed_before_them() {
        // The layouts of the former `lease::Slice` and `capacity::advert::Resources`.
        #[derive(Serialize)]
        struct OldSlice {
            cpu_millis: u64,
            mem_bytes: u64,
            disk_bytes: u64,
            gpus: u32,
        }
        #[derive(Serialize)]
        struct OldResources {
            cpu_millis: u64,
            mem_bytes: u64,
            disk_bytes: u64,
            gpus: Vec<Gpu>,
        }
        let gpu = Gpu {
            model: "H100".into(),
            mem_bytes: 80 << 30,
        };
        let counted: Resources = Resources {
            cpu_millis: 1500,
            mem_bytes: 1 << 30,
            disk_bytes: 7,
            gpus: 2,
        };
        let old = OldSlice {
            cpu_millis: 1500,
            mem_bytes: 1 << 30,
            disk_bytes: 7,
            gpus: 2,
        };
        assert_eq!(
            postcard::to_stdvec(&counted).ok(),
            postcard::to_stdvec(&old).ok()
        );
        let listed = Inventory {
            cpu_millis: 1,
            mem_bytes: 2,
            disk_bytes: 3,
            gpus: vec![gpu.clone()],
        };
        let old = OldResources {
            cpu_millis: 1,
            mem_bytes: 2,
            disk_bytes: 3,
            gpus: vec![gpu],
        };
        assert_eq!(
            postcard::to_stdvec(&listed).ok(),
            postcard::to_stdvec(&old).ok()
        );
    }

    #[test]
    fn an_inventory_less_a_lease_drops_gpus_from_the_end() {
        let gpu = |m: &str| Gpu {
            model: m.into(),
            mem_bytes: 1,
        };
        let total = Inventory {
            cpu_millis: 4000,
            mem_bytes: 10,
            disk_bytes: 10,
            gpus: vec![gpu("a"), gpu("b")],
        };
        let taken = Resources {
            cpu_millis: 5000,
            mem_bytes: 3,
            disk_bytes: 0,
            gpus: 1,
        };
        let free = total.less(&taken);
        assert_eq!(free.cpu_millis, 0);
        assert_eq!(free.mem_bytes, 7);
        assert_eq!(free.gpus, vec![gpu("a")]);
        assert_eq!(total.counted().gpus, 2);
    }
}
