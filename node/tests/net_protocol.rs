//! The protocol-agnostic network: protocols a test defines itself, registered through the
//! `Protocol` trait without touching `net`, over real libp2p on loopback; back-pressure; and
//! an unanswered countersignature reported with the code `outcome_unknown` by a real tenant
//! node, and the CLI's retry advice taken from that code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use degroup_node::identity::Identity;
use degroup_node::lease::LeaseProtocol;
use degroup_node::lease::contract::{Ask, Contract, LeaseRequest, hash, new_lease_id};
use degroup_node::lease::wire::{LeaseMsg, LeaseReply};
use degroup_node::metrics::NodeMetrics;
use degroup_node::net::{BUSY, Inbound, Limits, NetParams, Network, PeerLimits, Protocol};
use degroup_node::resources::{Prices, now_ms};
use degroup_node::signed::Envelope;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use common::{NodeProc, degroup, stderr};

/// A protocol only this test knows.
struct Echo;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum EchoReply {
    Echoed(String),
    Busy(String),
}

impl Protocol for Echo {
    const NAME: &'static str = "/degroup-test/echo/1";
    const LIMITS: Limits = Limits {
        max_request: 1024,
        max_response: 1024,
        max_inflight: 16,
        // One request may wait for the application; the next finds the queue full.
        queue: 1,
        timeout: Duration::from_secs(5),
        per_peer: PeerLimits::DEFAULT,
        over_relay: false,
    };
    type Request = String;
    type Response = EchoReply;

    fn unavailable(message: &str) -> EchoReply {
        EchoReply::Busy(message.to_owned())
    }
}

/// A second test protocol, to show two registered side by side each reach their own queue.
struct Twice;

impl Protocol for Twice {
    const NAME: &'static str = "/degroup-test/twice/1";
    const LIMITS: Limits = Limits {
        max_request: 64,
        max_response: 64,
        max_inflight: 4,
        queue: 4,
        timeout: Duration::from_secs(5),
        per_peer: PeerLimits::DEFAULT,
        over_relay: false,
    };
    type Request = u32;
    type Response = u32;

    fn unavailable(_: &str) -> u32 {
        0
    }
}

/// An endpoint on loopback; `serve` registers protocols on the builder before it starts.
fn endpoint<T>(
    shutdown: &CancellationToken,
    serve: impl FnOnce(&mut degroup_node::net::NetworkBuilder) -> T,
) -> (Network, Identity, T) {
    let identity = Identity::generate().unwrap();
    let mut builder = Network::builder(
        &identity,
        NetParams {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..Default::default()
        },
    );
    let served = serve(&mut builder);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let (net, _task) = builder
        .start(&mut registry, metrics, shutdown.clone())
        .unwrap();
    (net, identity, served)
}

async fn listen_addr(net: &Network) -> Multiaddr {
    net.wait_listening().await.unwrap();
    net.status().await.unwrap().listen_addrs[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_registered_by_a_test_work_and_a_full_queue_answers_unavailable() {
    let shutdown = CancellationToken::new();
    let (server, _, (mut echo, mut twice)) = endpoint(&shutdown, |b| {
        let echo: Inbound<Echo> = b.serve::<Echo>().unwrap();
        let twice: Inbound<Twice> = b.serve::<Twice>().unwrap();
        assert!(b.serve::<Echo>().is_err(), "a name is registered once");
        (echo, twice)
    });
    let (client, _, ()) = endpoint(&shutdown, |_| ());
    let peer = server.local_peer_id();
    let addr = listen_addr(&server).await;

    // Twice answers from its own queue.
    let answering = tokio::spawn(async move {
        while let Some(req) = twice.recv().await {
            let n = req.request;
            req.reply.send(n * 2);
        }
    });
    let r = client
        .request_at::<Twice>(peer, vec![addr.clone()], 21)
        .await
        .unwrap();
    assert_eq!(r, 42);

    // Echo: nobody reads its queue yet. The first request fills it (and waits)…
    let c = client.clone();
    let first = tokio::spawn(async move { c.request::<Echo>(peer, "first".into()).await });
    let mut busy = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // …and then every further request is answered "unavailable" at once.
        let t0 = std::time::Instant::now();
        let r = client.request::<Echo>(peer, "second".into()).await.unwrap();
        if let EchoReply::Busy(m) = r {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "at once, not a timeout"
            );
            busy = Some(m);
            break;
        }
    }
    assert_eq!(busy.as_deref(), Some(BUSY));
    // Once the application reads, the waiting request is answered.
    let req = echo.recv().await.unwrap();
    assert_eq!(req.request, "first");
    assert_eq!(req.peer, client.local_peer_id());
    req.reply.send(EchoReply::Echoed("first back".into()));
    assert_eq!(
        first.await.unwrap().unwrap(),
        EchoReply::Echoed("first back".into())
    );

    // A request over the server's frame cap is refused there: no answer, an error.
    let big = "x".repeat(4096);
    let e = client.request::<Echo>(peer, big).await.unwrap_err();
    assert!(e.maybe_delivered(), "it reached the server: {e}");

    // A peer that does not serve a protocol gives an error, not a hang.
    let e = client
        .request::<LeaseProtocol>(
            peer,
            LeaseMsg::Receipts {
                lease_id: [0; 16],
                since_ms: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("answer"), "{e}");
    answering.abort();
    shutdown.cancel();
}

/// A host that offers a lease and then never answers the countersignature.
/// Returns its network handle too: the swarm runs while a handle is held.
async fn silent_host(shutdown: &CancellationToken) -> (Network, PeerId, Multiaddr) {
    let (net, identity, mut inbound) = endpoint(shutdown, |b| b.serve::<LeaseProtocol>().unwrap());
    let key = identity.verifying_key().to_bytes();
    tokio::spawn(async move {
        while let Some(req) = inbound.recv().await {
            let LeaseMsg::Request(bytes) = &req.request else {
                // The countersignature: dropped unanswered, after it arrived.
                drop(req);
                continue;
            };
            let opened = Envelope::open::<LeaseRequest>(bytes).unwrap();
            let r = opened.value;
            let Ask::New(slice) = r.ask else { continue };
            let tenant = opened.signer.to_bytes();
            let now = now_ms();
            let contract = Contract {
                lease_id: new_lease_id(&key, &tenant, &r.idempotency_key),
                version: 1,
                host: key,
                tenant,
                slice,
                starts_at_ms: now,
                ends_at_ms: now + r.duration_ms,
                prices: Prices::default(),
                hourly_micros: 0,
                request_hash: hash(bytes),
                offer_expires_at_ms: now + 30_000,
            };
            let offer = Envelope::seal_kind(identity.signing_key(), &contract)
                .unwrap()
                .to_bytes();
            req.reply.send(LeaseReply::Offer(offer));
        }
    });
    let addr = listen_addr(&net).await;
    let peer = net.local_peer_id();
    (net, peer, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_countersignature_is_outcome_unknown_and_the_cli_advises_from_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (_host_net, host, addr) = silent_host(&shutdown).await;
    let dir = tmp.path().join("tenant");
    let boot = format!("{addr}/p2p/{host}");
    let tenant =
        tokio::task::spawn_blocking(move || NodeProc::start(&dir, &["--bootstrap", &boot]))
            .await
            .unwrap();
    let connected = {
        let t = tenant.dir.clone();
        let h = host.to_string();
        tokio::task::spawn_blocking(move || {
            common::eventually(Duration::from_secs(20), || {
                let o = degroup(&t, &["status", "--json"]);
                String::from_utf8_lossy(&o.stdout).contains(&h)
            })
        })
        .await
        .unwrap()
    };
    assert!(
        connected,
        "the tenant connects to the silent host: {}",
        tenant.log()
    );

    // The admin API says what happened with a code, and that a retry may succeed.
    let api = std::fs::read_to_string(tenant.dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(tenant.dir.join("api.token")).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/leases", api.trim()))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({
            "host": host.to_string(), "cpu_millis": 500, "duration_ms": 3_600_000u64,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 504);
    let body: degroup_node::api::ErrorBody = response.json().await.unwrap();
    assert_eq!(
        body.code(),
        Some(degroup_node::error::ErrorCode::OutcomeUnknown),
        "{body:?}"
    );
    assert!(body.retryable);

    // The CLI's advice comes from that code: retry with the same idempotency key.
    let t = tenant.dir.clone();
    let h = host.to_string();
    let out = tokio::task::spawn_blocking(move || {
        degroup(
            &t,
            &["lease", "create", "--host", &h, "--cpu", "1", "--for", "1h"],
        )
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--idempotency-key"), "{err}");
    assert!(err.contains("may or may not"), "{err}");
    drop(tenant);
    shutdown.cancel();
}
