//! `mesh-echo`: the mesh test plugin, on the raw `degroup:plugin/mesh` bindings.
//!
//! Commands come as messages from outside the group (`degroup message`, whose `from` is the
//! tenant's peer id or `cli`):
//! - `send:<id>:<text>` sends `<text>` to member `<id>` and logs `send <id>: ok` or
//!   `send <id>: error <kind>` (`unknown`, `not-in-group`, `unreachable`, `inbox-full`,
//!   `too-large`, `rate-limited`);
//! - `members` logs `members: <id>/<role>,…` (ordered by id; role `-` when empty);
//! - `broadcast:<text>` broadcasts `<text>` and logs `broadcast done`;
//!
//! A message from a member (`from` is a 32-hex deployment id) is logged as
//! `got from <from>: <text>`. (Round-trip times are `mesh-ping`'s job.)

use degroup_sdk::bindings::degroup::plugin::mesh;
use degroup_sdk::{Config, Plugin, export_plugin, info};

#[derive(Default)]
struct MeshEcho;

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
        Ok(MeshEcho)
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        let text = String::from_utf8_lossy(&payload).into_owned();
        if is_member_id(&from) {
            info!("got from {from}: {text}");
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
