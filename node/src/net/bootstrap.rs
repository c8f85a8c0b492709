//! Bootstrap peers: dialled at start, re-dialled with exponential backoff while disconnected.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use super::addrs::split_peer_id;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct BootstrapPeer {
    /// Address without the `/p2p/` part.
    pub addr: Multiaddr,
    /// Known from the address, or learnt at the first connection.
    pub peer: Option<PeerId>,
    pub connected: bool,
    next_dial: Instant,
    backoff: Duration,
}

impl BootstrapPeer {
    pub(super) fn new(addr: &Multiaddr) -> Self {
        let (addr, peer) = split_peer_id(addr);
        Self {
            addr,
            peer,
            connected: false,
            next_dial: Instant::now(),
            backoff: FIRST_BACKOFF,
        }
    }

    /// Whether it is time to dial; if so, schedules the next attempt further out.
    pub(super) fn due(&mut self, now: Instant, max: Duration) -> bool {
        if self.connected || now < self.next_dial {
            return false;
        }
        self.next_dial = now + self.backoff;
        self.backoff = (self.backoff * 2).min(max);
        true
    }

    pub(super) fn on_connected(&mut self, peer: PeerId) {
        self.peer.get_or_insert(peer);
        self.connected = true;
        self.backoff = FIRST_BACKOFF;
    }

    pub(super) fn on_disconnected(&mut self, now: Instant) {
        self.connected = false;
        self.next_dial = now + self.backoff;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_and_resets() {
        let mut b = BootstrapPeer::new(&Multiaddr::empty());
        let max = Duration::from_secs(4);
        let t0 = Instant::now();
        assert!(b.due(t0, max));
        assert!(!b.due(t0, max));
        assert!(b.due(t0 + Duration::from_secs(1), max));
        assert!(!b.due(t0 + Duration::from_secs(2), max));
        assert!(b.due(t0 + Duration::from_secs(3), max));
        assert_eq!(b.backoff, max);
        b.on_connected(PeerId::random());
        assert!(!b.due(t0 + Duration::from_secs(100), max));
        assert_eq!(b.backoff, FIRST_BACKOFF);
    }
}
