//! Address hygiene: which of a peer's announced addresses are worth dialling.
//!
//! A peer reached over loopback runs on this machine, so only its loopback addresses are kept
//! (dialling its LAN addresses would only take a longer way to the same process). A peer reached
//! over any other address is remote, so its loopback addresses are dropped: they would point
//! back at this machine. Unspecified addresses (`0.0.0.0`, `::`) are never dialable.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// The announced addresses of a peer worth dialling, given the address we reached it on.
pub fn dialable(reached_on: Option<&Multiaddr>, announced: &[Multiaddr]) -> Vec<Multiaddr> {
    let local = reached_on.is_some_and(is_loopback);
    announced
        .iter()
        .filter(|a| !is_unspecified(a))
        .filter(|a| reached_on.is_none() || is_loopback(a) == local)
        .map(|a| split_peer_id(a).0)
        .collect()
}

/// Splits a trailing `/p2p/<peer id>` off an address.
pub fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// Sorts addresses loopback first, so the first one shown is the one that works locally.
pub(crate) fn sort_for_display(addrs: &mut [Multiaddr]) {
    addrs.sort_by_key(|a| (!is_loopback(a), a.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Multiaddr {
        s.parse().unwrap_or_else(|_| Multiaddr::empty())
    }

    #[test]
    fn loopback_peers_keep_loopback_only() {
        let announced = [
            m("/ip4/127.0.0.1/tcp/1"),
            m("/ip4/192.0.2.7/tcp/1"),
            m("/ip4/0.0.0.0/tcp/1"),
        ];
        assert_eq!(
            dialable(Some(&m("/ip4/127.0.0.1/tcp/9")), &announced),
            vec![m("/ip4/127.0.0.1/tcp/1")]
        );
        assert_eq!(
            dialable(Some(&m("/ip4/192.0.2.9/tcp/9")), &announced),
            vec![m("/ip4/192.0.2.7/tcp/1")]
        );
    }
}
