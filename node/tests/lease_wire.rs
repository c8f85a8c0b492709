//! The lease protocol on the wire, against a real host node (in process, real loopback TCP):
//! malformed, oversized, forged, wrong-signer, misaddressed, stale and replayed messages are
//! refused with a reason and change nothing; retries are idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use degroup_node::config::{FlagOverrides, load};
use degroup_node::identity::{Identity, KEY_FILE};
use degroup_node::lease::LeaseProtocol;
use degroup_node::lease::contract::{
    Acceptance, Ask, Contract, LeaseRequest, ReleaseRequest, hash,
};
use degroup_node::lease::wire::{LeaseMsg, LeaseReply, RefusalCode};
use degroup_node::metrics::NodeMetrics;
use degroup_node::net::{NetParams, Network};
use degroup_node::resources::Resources;
use degroup_node::resources::now_ms;
use degroup_node::signed::Envelope;
use libp2p::{Multiaddr, PeerId};
use tokio_util::sync::CancellationToken;

async fn api(dir: &Path) -> (String, String) {
    for _ in 0..500 {
        if let (Ok(a), Ok(t)) = (
            std::fs::read_to_string(dir.join("api.addr")),
            std::fs::read_to_string(dir.join("api.token")),
        ) {
            return (format!("http://{}", a.trim()), t.trim().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("node in {} did not start", dir.display());
}

struct Host {
    dir: std::path::PathBuf,
    peer: PeerId,
    key: [u8; 32],
    addr: Multiaddr,
    http: reqwest::Client,
}

impl Host {
    async fn get(&self, path: &str) -> serde_json::Value {
        let (base, token) = api(&self.dir).await;
        self.http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn start_host(root: &Path, shutdown: &CancellationToken) -> Host {
    let dir = root.join("host");
    std::fs::create_dir_all(&dir).unwrap();
    let identity = Identity::generate().unwrap();
    identity.save(&dir.join(KEY_FILE), false).unwrap();
    let flags = FlagOverrides {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..Default::default()
    };
    let config = load(&dir, &flags).unwrap();
    let peer = identity.peer_id();
    let key = identity.verifying_key().to_bytes();
    tokio::spawn(degroup_node::node::run(
        config,
        identity,
        shutdown.clone(),
        false,
    ));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (base, token) = api(&dir).await;
    let set = http
        .put(format!("{base}/v1/capacity"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"settings": {"cpu_millis": 2000, "mem_bytes": 1u64 << 30}}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let host = Host {
        dir,
        peer,
        key,
        addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
        http,
    };
    let status = host.get("/v1/status").await;
    let addr = status["listen_addrs"][0].as_str().unwrap().parse().unwrap();
    Host { addr, ..host }
}

/// A bare network endpoint with its own key: the "peer" that sends crafted messages. It
/// serves nothing; it only asks.
fn endpoint(root: &Path, shutdown: &CancellationToken) -> (Network, Identity) {
    let dir = root.join("peer");
    std::fs::create_dir_all(&dir).unwrap();
    let identity = Identity::generate().unwrap();
    let flags = FlagOverrides {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..Default::default()
    };
    let config = load(&dir, &flags).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let builder = Network::builder(
        &identity,
        NetParams {
            listen: config.listen,
            bootstrap: Vec::new(),
            config: config.net,
        },
    );
    let (net, _task) = builder
        .start(&mut registry, metrics, shutdown.clone())
        .unwrap();
    (net, identity)
}

fn request(host: &Host, nonce: u8, key: u8) -> LeaseRequest {
    LeaseRequest {
        host: host.key,
        ask: Ask::New(Resources {
            cpu_millis: 500,
            ..Resources::default()
        }),
        duration_ms: 3_600_000,
        max_hourly_micros: None,
        nonce: [nonce; 16],
        idempotency_key: [key; 16],
        created_at_ms: now_ms(),
    }
}

fn sealed<K: degroup_node::signed::Kind>(who: &Identity, v: &K) -> Vec<u8> {
    Envelope::seal_kind(who.signing_key(), v)
        .unwrap()
        .to_bytes()
}

fn refused(reply: &LeaseReply, code: RefusalCode) -> String {
    match reply {
        LeaseReply::Refused(r) if r.code == code => r.message.clone(),
        other => panic!("expected a {code:?} refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_and_retries_are_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let host = start_host(tmp.path(), &shutdown).await;
    let (net, me) = endpoint(tmp.path(), &shutdown);
    let send = |msg: LeaseMsg| {
        let net = net.clone();
        let (peer, addr) = (host.peer, host.addr.clone());
        async move {
            tokio::time::timeout(
                Duration::from_secs(15),
                net.request_at::<LeaseProtocol>(peer, vec![addr], msg),
            )
            .await
            .expect("an answer in time")
        }
    };

    // Malformed bytes, a flipped signature byte, an oversized frame.
    let r = send(LeaseMsg::Request(vec![1, 2, 3])).await.unwrap();
    assert!(refused(&r, RefusalCode::Invalid).contains("malformed"));
    let mut forged = sealed(&me, &request(&host, 1, 1));
    let n = forged.len();
    forged[n - 1] ^= 0x55;
    let r = send(LeaseMsg::Request(forged)).await.unwrap();
    refused(&r, RefusalCode::Invalid);
    assert!(
        send(LeaseMsg::Request(vec![0; 64 * 1024])).await.is_err(),
        "an oversized frame is dropped by the codec"
    );
    // Signed by someone else than the sending peer.
    let other = Identity::generate().unwrap();
    let r = send(LeaseMsg::Request(sealed(&other, &request(&host, 2, 2))))
        .await
        .unwrap();
    assert!(refused(&r, RefusalCode::Invalid).contains("must come from its signer"));
    // Addressed to another host; created long ago.
    let mut misaddressed = request(&host, 3, 3);
    misaddressed.host = [9; 32];
    let r = send(LeaseMsg::Request(sealed(&me, &misaddressed)))
        .await
        .unwrap();
    assert!(refused(&r, RefusalCode::Invalid).contains("another host"));
    let mut stale = request(&host, 4, 4);
    stale.created_at_ms -= 10 * 60 * 1000;
    let r = send(LeaseMsg::Request(sealed(&me, &stale))).await.unwrap();
    assert!(refused(&r, RefusalCode::Replay).contains("stale"));
    // Too much, too long, nothing at all.
    let mut big = request(&host, 5, 5);
    big.ask = Ask::New(Resources {
        cpu_millis: 3000,
        ..Resources::default()
    });
    let r = send(LeaseMsg::Request(sealed(&me, &big))).await.unwrap();
    refused(&r, RefusalCode::Capacity);
    let mut empty = request(&host, 6, 6);
    empty.ask = Ask::New(Resources::default());
    let r = send(LeaseMsg::Request(sealed(&me, &empty))).await.unwrap();
    refused(&r, RefusalCode::Invalid);
    // Countersignatures and releases of leases that do not exist.
    let bogus = Acceptance {
        lease_id: [1; 16],
        version: 1,
        contract_hash: [0; 32],
    };
    let r = send(LeaseMsg::Accept(sealed(&me, &bogus))).await.unwrap();
    refused(&r, RefusalCode::Unknown);
    let rel = ReleaseRequest {
        lease_id: [1; 16],
        at_ms: now_ms(),
    };
    let r = send(LeaseMsg::Release(sealed(&me, &rel))).await.unwrap();
    refused(&r, RefusalCode::Unknown);

    let state = host.get("/v1/leases").await;
    assert_eq!(state["leases"].as_array().unwrap().len(), 0, "{state}");
    assert_eq!(state["offers_held"], 0, "refusals hold nothing: {state}");

    // A good request gets an offer; the same request again gets the same offer; its nonce
    // with another idempotency key is a replay.
    let good = sealed(&me, &request(&host, 7, 7));
    let LeaseReply::Offer(offer) = send(LeaseMsg::Request(good.clone())).await.unwrap() else {
        panic!("expected an offer");
    };
    let LeaseReply::Offer(again) = send(LeaseMsg::Request(good.clone())).await.unwrap() else {
        panic!("expected the same offer");
    };
    assert_eq!(offer, again);
    let r = send(LeaseMsg::Request(sealed(&me, &request(&host, 7, 8))))
        .await
        .unwrap();
    assert!(refused(&r, RefusalCode::Replay).contains("nonce"));
    let contract: Contract = Envelope::open::<Contract>(&offer).unwrap().value;
    assert_eq!(host.get("/v1/leases").await["offers_held"], 1);

    // A countersignature by someone else, or of other bytes, is refused.
    let acc = Acceptance {
        lease_id: contract.lease_id,
        version: 1,
        contract_hash: hash(&offer),
    };
    let wrong_hash = Acceptance {
        contract_hash: [0; 32],
        ..acc.clone()
    };
    let r = send(LeaseMsg::Accept(sealed(&me, &wrong_hash)))
        .await
        .unwrap();
    refused(&r, RefusalCode::Invalid);
    let r = send(LeaseMsg::Accept(sealed(&other, &acc))).await.unwrap();
    refused(&r, RefusalCode::Invalid);
    assert_eq!(
        host.get("/v1/leases").await["leases"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The real countersignature commits; retrying it, or the request, gets the same lease.
    let acc_bytes = sealed(&me, &acc);
    let committed = send(LeaseMsg::Accept(acc_bytes.clone())).await.unwrap();
    let LeaseReply::Committed {
        contract: c1,
        acceptance: a1,
    } = &committed
    else {
        panic!("expected committed, got {committed:?}");
    };
    assert_eq!(c1, &offer);
    assert_eq!(a1, &acc_bytes);
    assert_eq!(send(LeaseMsg::Accept(acc_bytes)).await.unwrap(), committed);
    assert_eq!(send(LeaseMsg::Request(good)).await.unwrap(), committed);
    let state = host.get("/v1/leases").await;
    assert_eq!(
        state["leases"].as_array().unwrap().len(),
        1,
        "one lease, never two"
    );
    assert_eq!(state["host"]["leased"]["cpu_millis"], 500);
    assert_eq!(state["offers_held"], 0);
    assert_eq!(host.get("/v1/leases-check").await["ok"], true);

    // Receipts and releases are for the lease's tenant only.
    let (net2, _) = endpoint(&tmp.path().join("second"), &shutdown);
    let r = net2
        .request_at::<LeaseProtocol>(
            host.peer,
            vec![host.addr.clone()],
            LeaseMsg::Receipts {
                lease_id: contract.lease_id,
                since_ms: 0,
            },
        )
        .await
        .unwrap();
    refused(&r, RefusalCode::Unknown);
    shutdown.cancel();
}
