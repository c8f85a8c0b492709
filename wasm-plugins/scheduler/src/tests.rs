//! The plugin end to end on the SDK's stand-in host: a leader and two remote agents (whose
//! answers the test writes), heartbeats, placement, a dead agent and a restart.

use degroup_sdk::mesh::Member;
use degroup_sdk::{Config, Plugin, kv, testing};
use serde_json::{Value, json};

use super::Scheduler;

const LEADER: &str = "00000000000000000000000000000000";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccc";

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs.iter().copied().collect()
}

fn messages() -> Vec<String> {
    testing::take_logs()
        .into_iter()
        .map(|l| l.message)
        .collect()
}

fn member(id: &str, role: &str) -> Member {
    Member {
        id: id.into(),
        host: format!("host-{}", &id[..1]),
        package: "scheduler@0.1.0".into(),
        role: role.into(),
    }
}

/// The runs each remote agent was told since the last call: (agent, name).
fn runs() -> Vec<(String, String)> {
    testing::take_sent()
        .into_iter()
        .filter_map(|s| {
            let v = s.json()?;
            (v["op"] == "run").then(|| (s.to, v["name"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// `agent` answers a heartbeat, running `names`.
fn pong(s: &mut Scheduler, agent: &str, names: &[String]) {
    let workloads: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "child": format!("child-{n}"), "state": "running"}))
        .collect();
    let p = json!({"op": "pong", "seq": 1, "capacity": {"cpu_millis": 900, "mem_mib": 448},
        "workloads": workloads});
    s.message(agent.into(), p.to_string().into_bytes());
}

#[test]
fn places_on_every_agent_and_re_places_a_dead_agents_workloads() -> Result<(), String> {
    testing::reset();
    let mut lease = testing::default_lease();
    lease.slice.mem_bytes = 480 << 20;
    testing::set_lease(lease);
    testing::set_members(vec![
        member(LEADER, ""),
        member(B, "agent"),
        member(C, "agent"),
    ]);
    let workloads = "w0:100:32:hello@0.1.0,w1:100:32:hello@0.1.0,w2:100:32:hello@0.1.0,\
                     w3:100:32:hello@0.1.0,w4:100:32:hello@0.1.0,w5:100:32:hello@0.1.0";
    let mut s = Scheduler::init(config(&[("workloads", workloads)]))?;
    let logs = messages();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("accepted w5 (100 millis, 32 MiB, hello@0.1.0)")),
        "{logs:?}"
    );

    // t=0: the first heartbeat pings both agents; nothing is placed before they answer.
    s.tick(0);
    let pings: Vec<String> = testing::take_sent().into_iter().map(|m| m.to).collect();
    assert_eq!(pings, [B, C]);
    assert!(kv::list("placement/", 10).is_empty());
    pong(&mut s, B, &[]);
    pong(&mut s, C, &[]);
    // Settled, but not before settle_ms (3000) since the start.
    s.tick(1000);
    assert!(kv::list("placement/", 10).is_empty());
    pong(&mut s, B, &[]);
    pong(&mut s, C, &[]);
    s.tick(3000);
    assert_eq!(kv::list("placement/", 10).len(), 6);
    let logs = messages();
    let placed: Vec<&String> = logs.iter().filter(|l| l.starts_with("placed ")).collect();
    assert_eq!(placed.len(), 6, "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.starts_with(&format!("placed w0 on {LEADER} (test-host)"))),
        "{logs:?}"
    );
    // Two each: the leader started its own as children, the agents were told to.
    assert_eq!(testing::children().len(), 2);
    let told = runs();
    let on = |a: &str| {
        told.iter()
            .filter(|(to, _)| to == a)
            .map(|(_, n)| n.clone())
            .collect::<Vec<_>>()
    };
    let (on_b, on_c) = (on(B), on(C));
    assert_eq!((on_b.len(), on_c.len()), (2, 2), "{told:?}");

    // The agents report them; a heartbeat later nothing is re-sent.
    pong(&mut s, B, &on_b);
    pong(&mut s, C, &on_c);
    s.tick(4000);
    assert!(runs().is_empty());
    messages();

    // C falls silent: dead after 3000 ms, its two workloads move to the leader and B.
    pong(&mut s, B, &on_b);
    s.tick(5000);
    pong(&mut s, B, &on_b);
    s.tick(6000);
    pong(&mut s, B, &on_b);
    s.tick(7001);
    let logs = messages();
    let why = format!(
        "agent {C} on host-c missed heartbeats for 4001 ms; re-placing {}",
        on_c.join(", ")
    );
    assert!(logs.contains(&why), "{logs:?}");
    let moved: Vec<&String> = logs.iter().filter(|l| l.starts_with("placed ")).collect();
    assert_eq!(moved.len(), 2, "{logs:?}");
    assert!(moved.iter().all(|l| !l.contains(C)), "{moved:?}");
    let stored: Vec<String> = kv::list("placement/", 10)
        .iter()
        .filter_map(|k| kv::get_json::<super::leader::Stored>(k).ok().flatten())
        .map(|p| p.agent)
        .collect();
    assert_eq!(stored.len(), 6);
    assert!(stored.iter().all(|a| a != C));

    // A restarted leader carries on from its store: same placements, nothing pending.
    let s2 = Scheduler::init(config(&[("workloads", workloads)]))?;
    let logs = messages();
    assert!(
        logs.iter().any(|l| l == "restored 6 workloads, 6 placed"),
        "{logs:?}"
    );
    let Some(l) = &s2.leader else {
        return Err("a leader".into());
    };
    assert!(l.cluster.pending().is_empty());
    assert!(l.cluster.placements().values().all(|a| a != C));

    // C comes back reporting what it ran: it is told to drop it.
    pong(&mut s, C, &on_c);
    s.tick(8001);
    let drops: Vec<String> = testing::take_sent()
        .into_iter()
        .filter(|m| m.to == C && m.json().is_some_and(|v| v["op"] == "drop"))
        .map(|m| m.json().map(|v| v["name"].to_string()).unwrap_or_default())
        .collect();
    assert_eq!(drops.len(), 2, "{drops:?}");
    Ok(())
}

#[test]
fn tenant_requests_and_agent_answers() -> Result<(), String> {
    testing::reset();
    let mut s = Scheduler::init(config(&[("report_every", "2")]))?;
    s.message(
        "tenant".into(),
        br#"{"op":"submit","name":"batch","cpu_millis":300,"mem_mb":16}"#.to_vec(),
    );
    s.message(
        "tenant".into(),
        br#"{"op":"submit","name":"huge","cpu_millis":5000,"mem_mib":1,"package":"hello@0.1.0"}"#
            .to_vec(),
    );
    s.message("tenant".into(), b"nonsense".to_vec());
    for t in 0..4 {
        s.tick(t * 1000);
    }
    s.message("cli".into(), br#"{"op":"status"}"#.to_vec());
    s.message("cli".into(), br#"{"op":"remove","name":"batch"}"#.to_vec());
    let logs = messages();
    for want in [
        "accepted batch (300 millis, 16 MiB, no package)",
        "message from tenant: bad request",
        &format!("placed batch on {LEADER} (test-host)"),
        "place huge: not placed yet: larger than any live agent",
        "utilization: 2 workloads, 1 placed, 1 pending, on 1 agents",
        &format!("removed batch (was on {LEADER})"),
    ] {
        assert!(
            logs.iter().any(|l| l.starts_with(want)),
            "{want:?} in {logs:?}"
        );
    }
    assert!(
        testing::children().is_empty(),
        "a placement only starts nothing"
    );

    // An agent answers pings with its capacity, runs what it is told, refuses requests.
    testing::reset();
    testing::set_members(vec![member(LEADER, "agent"), member(B, "")]);
    let mut a = Scheduler::init(config(&[("role", "agent")]))?;
    a.message(B.into(), br#"{"op":"ping","seq":7}"#.to_vec());
    a.message(
        B.into(),
        br#"{"op":"run","name":"web","package":"hello@0.1.0","cpu_millis":100,"mem_mib":16}"#
            .to_vec(),
    );
    a.message(B.into(), br#"{"op":"ping","seq":8}"#.to_vec());
    a.message(
        "tenant".into(),
        br#"{"op":"submit","name":"x","cpu_millis":1,"mem_mib":1}"#.to_vec(),
    );
    let sent = testing::take_sent();
    assert_eq!(sent.len(), 2);
    let first = sent[0].json().unwrap_or_default();
    assert_eq!(first["op"], "pong");
    assert_eq!(first["seq"], 7);
    assert_eq!(first["capacity"], json!({"cpu_millis": 900, "mem_mib": 32}));
    let second = sent[1].json().unwrap_or_default();
    assert_eq!(second["workloads"][0]["name"], "web");
    assert_eq!(second["workloads"][0]["state"], "running");
    assert_eq!(testing::children().len(), 1);
    assert!(messages().iter().any(|l| l.contains("this is an agent")));
    assert!(Scheduler::init(config(&[("role", "boss")])).is_err());
    assert!(Scheduler::init(config(&[("workloads", "a:1")])).is_err());
    Ok(())
}
