#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::identity::Identity;
use crate::signed::Envelope;

struct World {
    tenant: Identity,
    host_a: Identity,
    host_b: Identity,
    book: Book,
}

fn id(n: u8) -> String {
    format!("{n:032x}")
}

fn member(n: u8, host: &Identity) -> Member {
    Member {
        id: id(n),
        host: host.peer_id().to_string(),
        package: "echo@0.1.0".into(),
        role: String::new(),
    }
}

fn world() -> World {
    let host_a = Identity::generate().unwrap();
    World {
        tenant: Identity::generate().unwrap(),
        host_b: Identity::generate().unwrap(),
        book: Book::new(host_a.peer_id().to_string()),
        host_a,
    }
}

impl World {
    fn doc(&self, version: u64, members: Vec<Member>) -> GroupDoc {
        GroupDoc {
            name: "shop".into(),
            tenant: self.tenant.verifying_key().to_bytes(),
            version,
            issued_ms: 0,
            members,
        }
    }

    fn tenant_peer(&self) -> String {
        self.tenant.peer_id().to_string()
    }
}

fn opened_mesh(signer: &Identity, e: &MeshEnvelope) -> Opened<MeshEnvelope> {
    let bytes = Envelope::seal_kind(signer.signing_key(), e)
        .unwrap()
        .to_bytes();
    Envelope::open::<MeshEnvelope>(&bytes).unwrap()
}

#[test]
fn holds_only_documents_about_its_own_deployments() {
    let mut w = world();
    let d = w.doc(2, vec![member(1, &w.host_a), member(2, &w.host_b)]);
    // Nothing of the tenant runs here yet.
    assert!(w.book.judge(&d).is_err());
    // A deployment of another tenant with that id does not count either.
    let (inbox, _) = Inbox::for_tests(4, true);
    w.book.attach(&id(1), "someone-else", inbox);
    assert!(w.book.judge(&d).is_err());
    let (inbox, _) = Inbox::for_tests(4, true);
    w.book.attach(&id(1), &w.tenant_peer(), inbox);
    assert_eq!(w.book.judge(&d), Ok(Verdict::Hold));
    w.book.hold(d.clone(), Vec::new());
    assert_eq!(w.book.judge(&d), Ok(Verdict::Old));
    assert_eq!(w.book.members(&id(1)).len(), 2);
    // A newer version without the local member: dropped.
    let d3 = w.doc(3, vec![member(2, &w.host_b)]);
    assert_eq!(w.book.judge(&d3), Ok(Verdict::Drop));
    w.book.forget(&(d3.tenant, d3.name.clone()), d3.version);
    assert!(w.book.members(&id(1)).is_empty());
}

#[test]
fn routes_locally_remotely_and_refuses() {
    let mut w = world();
    let tp = w.tenant_peer();
    let (i1, _) = Inbox::for_tests(4, true);
    let (i3, mut take3) = Inbox::for_tests(1, true);
    w.book.attach(&id(1), &tp, i1);
    w.book.attach(&id(3), &tp, i3);
    // A deployment of another tenant, here, in no group.
    let (i9, _) = Inbox::for_tests(4, true);
    w.book.attach(&id(9), "other-tenant", i9);
    let d = w.doc(
        2,
        vec![
            member(1, &w.host_a),
            member(2, &w.host_b),
            member(3, &w.host_a),
        ],
    );
    w.book.hold(d, Vec::new());
    let now = Instant::now();
    match w.book.route(&id(1), &id(3), 5, now).unwrap() {
        Route::Local(inbox) => inbox.deliver(id(1), b"hello".to_vec()).unwrap(),
        Route::Remote { .. } => panic!("local"),
    }
    assert_eq!(take3(), Some((id(1), b"hello".to_vec())));
    match w.book.route(&id(1), &id(2), 5, now).unwrap() {
        Route::Remote { host, version, .. } => {
            assert_eq!(host, w.host_b.peer_id().to_string());
            assert_eq!(version, 2);
        }
        Route::Local(_) => panic!("remote"),
    }
    assert!(matches!(
        w.book.route(&id(1), &id(7), 5, now),
        Err(SendError::Unknown)
    ));
    assert!(matches!(
        w.book.route(&id(9), &id(1), 5, now),
        Err(SendError::NotInGroup)
    ));
    assert!(matches!(
        w.book.route(&id(1), &id(9), 5, now),
        Err(SendError::NotInGroup)
    ));
    // The rate cap: the burst, then refusals.
    let sent = (0..200)
        .filter(|_| w.book.route(&id(3), &id(1), 1, now).is_ok())
        .count();
    assert_eq!(sent, super::super::rate::MSG_BURST as usize);
    assert!(matches!(
        w.book.route(&id(3), &id(1), 1, now),
        Err(SendError::RateLimited)
    ));
}

#[test]
fn inbound_refuses_forgers_and_outsiders() {
    let mut w = world();
    let tp = w.tenant_peer();
    let (i1, _) = Inbox::for_tests(4, true);
    w.book.attach(&id(1), &tp, i1);
    let d = w.doc(2, vec![member(1, &w.host_a), member(2, &w.host_b)]);
    w.book.hold(d, Vec::new());
    let e = MeshEnvelope {
        from: id(2),
        to: id(1),
        tenant: w.tenant.verifying_key().to_bytes(),
        group: "shop".into(),
        version: 2,
        payload: b"hi".to_vec(),
    };
    let b_peer = w.host_b.peer_id().to_string();
    let now = Instant::now();
    assert!(
        w.book
            .inbound(&opened_mesh(&w.host_b, &e), &b_peer, now)
            .is_ok()
    );
    // Signed by a third peer claiming host B's deployment.
    let forger = Identity::generate().unwrap();
    let f_peer = forger.peer_id().to_string();
    let r = w.book.inbound(&opened_mesh(&forger, &e), &f_peer, now);
    assert_eq!(r.unwrap_err(), (MeshReply::Refused, "forged"));
    // Host B's envelope relayed by someone else.
    let r = w.book.inbound(&opened_mesh(&w.host_b, &e), &f_peer, now);
    assert_eq!(r.unwrap_err(), (MeshReply::Refused, "forged"));
    // From a deployment the group does not list.
    let mut outsider = e.clone();
    outsider.from = id(5);
    let r = w
        .book
        .inbound(&opened_mesh(&w.host_b, &outsider), &b_peer, now);
    assert_eq!(r.unwrap_err().0, MeshReply::NotInGroup);
}

#[test]
fn leave_notices_count_only_from_the_listed_host() {
    let mut w = world();
    let tp = w.tenant_peer();
    let (i1, _) = Inbox::for_tests(4, true);
    w.book.attach(&id(1), &tp, i1);
    let d = w.doc(2, vec![member(1, &w.host_a), member(2, &w.host_b)]);
    w.book.hold(d, Vec::new());
    let left = Left {
        deployment: id(2),
        tenant: w.tenant.verifying_key().to_bytes(),
        group: "shop".into(),
        at_ms: 0,
    };
    let seal = |who: &Identity| {
        let bytes = Envelope::seal_kind(who.signing_key(), &left)
            .unwrap()
            .to_bytes();
        Envelope::open::<Left>(&bytes).unwrap()
    };
    let forger = Identity::generate().unwrap();
    assert!(w.book.left(&seal(&forger)).is_err());
    assert_eq!(w.book.members(&id(1)).len(), 2);
    let key = w.book.left(&seal(&w.host_b)).unwrap().unwrap();
    w.book.mark_gone(&key, &id(2));
    assert_eq!(w.book.left(&seal(&w.host_b)), Ok(None));
    let m = w.book.members(&id(1));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id, id(1));
    // This host's own member stops: gone here, and host B is to be told.
    let notices = w.book.stopped(&id(1), 5);
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].1, vec![w.host_b.peer_id().to_string()]);
    assert!(w.book.members(&id(1)).is_empty());
}
