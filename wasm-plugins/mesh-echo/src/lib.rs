//! `mesh-echo`: the mesh test plugin, on the raw `degroup:plugin/mesh` bindings.
//!
//! Commands come as messages from outside the group (`degroup message`, whose `from` is the
//! tenant's peer id or `cli`):
//! - `send:<id>:<text>` sends `<text>` to member `<id>` and logs `send <id>: ok` or
//!   `send <id>: error <kind>` (`unknown`, `not-in-group`, `unreachable`, `inbox-full`,
//!   `too-large`, `rate-limited`);
//! - `members` logs `members: <id>/<role>,…` (ordered by id; role `-` when empty);
//! - `broadcast:<text>` broadcasts `<text>` and logs `broadcast done`;
//! - `ping:<id>:<n>` plays `n` ping-pong rounds with member `<id>` (one `ping` sent per
//!   `pong` received), then logs `rtt n=… p50_us=… p99_us=…` (monotonic clock).
//!
//! A message from a member (`from` is a 32-hex deployment id) is logged as
//! `got from <from>: <text>`, except `ping` (answered `pong`, not logged) and `pong`.

use degroup_sdk::bindings::degroup::plugin::mesh;
use degroup_sdk::{Config, Plugin, export_plugin, info};

#[derive(Default)]
struct MeshEcho {
    /// The ping-pong in progress: peer, rounds left, when the last ping left, round trips.
    rounds: Option<(String, u32, u64, Vec<u64>)>,
}

impl MeshEcho {
    fn ping(&mut self) {
        let Some((to, left, sent, rtts)) = self.rounds.as_mut() else {
            return;
        };
        if *left == 0 {
            rtts.sort_unstable();
            let at = |q: usize| rtts.get((rtts.len() * q / 100).min(rtts.len().saturating_sub(1)));
            info!(
                "rtt n={} p50_us={} p99_us={}",
                rtts.len(),
                at(50).copied().unwrap_or(0) / 1000,
                at(99).copied().unwrap_or(0) / 1000
            );
            self.rounds = None;
            return;
        }
        *left -= 1;
        *sent = degroup_sdk::time::monotonic_ns();
        if let Err(e) = mesh::send(to, b"ping") {
            info!("ping {to}: error {}", kind(e));
            self.rounds = None;
        }
    }
}

fn kind(e: mesh::SendError) -> &'static str {
    match e {
        mesh::SendError::Unknown => "unknown",
        mesh::SendError::NotInGroup => "not-in-group",
        mesh::SendError::Unreachable => "unreachable",
        mesh::SendError::InboxFull => "inbox-full",
        mesh::SendError::TooLarge => "too-large",
        mesh::SendError::RateLimited => "rate-limited",
    }
}

fn is_member_id(from: &str) -> bool {
    from.len() == 32 && from.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Plugin for MeshEcho {
    fn init(_config: Config) -> Result<Self, String> {
        info!("mesh-echo ready");
        Ok(MeshEcho::default())
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        let text = String::from_utf8_lossy(&payload).into_owned();
        if is_member_id(&from) {
            match text.as_str() {
                "ping" => {
                    let _ = mesh::send(&from, b"pong");
                }
                "pong" => {
                    if let Some((_, _, sent, rtts)) = self.rounds.as_mut() {
                        rtts.push(degroup_sdk::time::monotonic_ns().saturating_sub(*sent));
                    }
                    self.ping();
                }
                _ => info!("got from {from}: {text}"),
            }
            return;
        }
        if let Some(rest) = text.strip_prefix("ping:") {
            let (to, n) = rest.split_once(':').unwrap_or((rest, "100"));
            let n = n.trim().parse().unwrap_or(100);
            self.rounds = Some((to.to_string(), n, 0, Vec::new()));
            self.ping();
            return;
        }
        if let Some(rest) = text.strip_prefix("send:") {
            let (to, body) = rest.split_once(':').unwrap_or((rest, ""));
            match mesh::send(to, body.as_bytes()) {
                Ok(()) => info!("send {to}: ok"),
                Err(e) => info!("send {to}: error {}", kind(e)),
            }
        } else if text.trim() == "members" {
            let list: Vec<String> = mesh::members()
                .into_iter()
                .map(|m| {
                    let role = if m.role.is_empty() { "-".to_string() } else { m.role };
                    format!("{}/{}", m.id, role)
                })
                .collect();
            info!("members: {}", list.join(","));
        } else if let Some(body) = text.strip_prefix("broadcast:") {
            mesh::broadcast(body.as_bytes());
            info!("broadcast done");
        } else {
            info!("unknown command from {from}: {text}");
        }
    }
}

export_plugin!(MeshEcho);
