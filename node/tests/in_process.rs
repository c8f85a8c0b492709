//! Several nodes in one process (each with its own data dir, swarm, store and API), talking over
//! real loopback TCP: a capacity change on one reaches the others, and an invalid advert
//! gossiped by nobody is never accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use degroup_node::config::{FlagOverrides, load};
use degroup_node::identity::{Identity, KEY_FILE};
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

async fn get(client: &reqwest::Client, dir: &Path, path: &str) -> serde_json::Value {
    let (base, token) = api(dir).await;
    client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_one_process_share_adverts() {
    let tmp = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut dirs = Vec::new();
    let mut tasks = Vec::new();
    let mut first_addr = None;
    for i in 0..3 {
        let dir = tmp.path().join(format!("n{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let identity = Identity::generate().unwrap();
        identity.save(&dir.join(KEY_FILE), false).unwrap();
        let flags = FlagOverrides {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap: first_addr.iter().cloned().collect(),
            ..Default::default()
        };
        let config = load(&dir, &flags).unwrap();
        tasks.push(tokio::spawn(degroup_node::node::run(
            config,
            identity,
            shutdown.clone(),
            false,
        )));
        let status = get(&client, &dir, "/v1/status").await;
        if first_addr.is_none() {
            first_addr = Some(format!(
                "{}/p2p/{}",
                status["listen_addrs"][0].as_str().unwrap(),
                status["peer_id"].as_str().unwrap()
            ));
        }
        dirs.push(dir);
    }
    let (base, token) = api(&dirs[0]).await;
    let body = serde_json::json!({"settings": {"country": "NL", "certs": ["ISO27001"]}});
    let r = client
        .put(format!("{base}/v1/capacity"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let bad = serde_json::json!({"settings": {"country": "XX"}});
    let r = client
        .put(format!("{base}/v1/capacity"))
        .bearer_auth(&token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "invalid country refused");

    let mut seen = false;
    for _ in 0..200 {
        let found = get(
            &client,
            &dirs[2],
            "/v1/find?q=country%3DNL%20cert%3DISO27001",
        )
        .await;
        if found["matches"].as_array().is_some_and(|m| m.len() == 1) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "node 2 learns node 0's change");
    // Every node ends up holding all three adverts (gossip or sync, whichever comes first).
    let mut known = serde_json::Value::Null;
    for _ in 0..200 {
        known = get(&client, &dirs[1], "/v1/status").await["adverts_known"].clone();
        if known == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(known, 3);
    let bad_query = client
        .get(format!("{}/v1/find?q=cpu%3E%3D", api(&dirs[1]).await.0))
        .bearer_auth(api(&dirs[1]).await.1)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status().as_u16(), 400);

    shutdown.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
