//! The faults, chosen from the seed.
//!
//! - `kill -9` a host (no shutdown, no flush beyond what the node already made durable), keep it
//!   down a moment, start it again on the same data directory and port.
//! - `kill -9` a tenant and start it again.
//! - `SIGSTOP` a host for a few seconds (a hung process: its sockets stay open, nothing answers),
//!   then `SIGCONT`.
//! - Partition (root only): move some nodes to the other bridge of the switch namespace for a
//!   few seconds, change a host's offer on one side so that the sides disagree, then heal.

use std::fmt;
use std::time::Duration;

use rand::RngExt as _;
use rand::rngs::StdRng;

/// One fault.
#[derive(Debug, Clone)]
pub(super) enum Fault {
    /// `at`: how long after the load starts the SIGKILL lands (requests are in flight).
    KillHost {
        host: usize,
        at: Duration,
        down: Duration,
    },
    KillTenant {
        tenant: usize,
        at: Duration,
        down: Duration,
    },
    Pause {
        host: usize,
        length: Duration,
    },
    Partition {
        side: Vec<usize>,
        /// The host whose offer changes while cut off (on the cut-off side).
        changed: usize,
        length: Duration,
    },
}

impl Fault {
    /// A short name, for the summary.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::KillHost { .. } => "kill -9 host",
            Self::KillTenant { .. } => "kill -9 tenant",
            Self::Pause { .. } => "SIGSTOP host",
            Self::Partition { .. } => "partition",
        }
    }

    /// Picks a fault. Partitions only when `partitions` is on, and then every other cycle at
    /// least, so that a run has as many heals as kills.
    pub(super) fn choose(
        rng: &mut StdRng,
        cycle: usize,
        hosts: &[usize],
        tenants: &[usize],
        nodes: usize,
        partitions: bool,
    ) -> Self {
        let ms =
            |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
        let host = hosts[rng.random_range(0..hosts.len())];
        if partitions && cycle % 2 == 1 {
            // A random proper subset holding `host`: the cut-off side.
            let mut side = vec![host];
            for i in 0..nodes {
                if i != host && side.len() + 1 < nodes && rng.random_bool(0.35) {
                    side.push(i);
                }
            }
            side.sort_unstable();
            return Self::Partition {
                side,
                changed: host,
                length: ms(rng, 3_000, 8_000),
            };
        }
        match rng.random_range(0..10) {
            0..=4 => Self::KillHost {
                host,
                at: ms(rng, 5, 300),
                down: ms(rng, 200, 2_000),
            },
            5..=6 => Self::KillTenant {
                tenant: tenants[rng.random_range(0..tenants.len())],
                at: ms(rng, 5, 300),
                down: ms(rng, 200, 1_500),
            },
            _ => Self::Pause {
                host,
                length: ms(rng, 1_000, 5_000),
            },
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KillHost { host: n, at, down }
            | Self::KillTenant {
                tenant: n,
                at,
                down,
            } => write!(f, "kill -9 node {n} {at:?} into the load, down {down:?}"),
            Self::Pause { host, length } => write!(f, "SIGSTOP node {host} for {length:?}"),
            Self::Partition {
                side,
                changed,
                length,
            } => write!(
                f,
                "partition nodes {side:?} from the rest for {length:?}; node {changed} changes its offer meanwhile"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn schedule(seed: u64, partitions: bool) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..40)
            .map(|c| Fault::choose(&mut rng, c, &[0, 1, 2], &[3, 4], 5, partitions).to_string())
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        assert_eq!(schedule(42, true), schedule(42, true));
        assert_ne!(schedule(42, true), schedule(43, true));
    }

    #[test]
    fn partitions_only_with_namespaces_and_always_a_proper_subset() {
        assert!(
            schedule(7, false)
                .iter()
                .all(|f| !f.starts_with("partition"))
        );
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = 0;
        for c in 0..200 {
            if let Fault::Partition { side, changed, .. } =
                Fault::choose(&mut rng, c, &[0, 1, 2], &[3, 4], 5, true)
            {
                seen += 1;
                assert!(!side.is_empty() && side.len() < 5, "{side:?}");
                assert!(side.contains(&changed));
            }
        }
        assert_eq!(seen, 100, "every other cycle is a partition");
    }
}
