//! The scheduler's messages, JSON in a mesh (or `degroup message`) payload, told apart by
//! `op`:
//!
//! - from the tenant to the leader: `submit` (`name`, `cpu_millis`, `mem_mib` — `mem_mb` is
//!   accepted too — and `package`), `remove` (`name`), `status`;
//! - from the leader to an agent: `ping` (a heartbeat, `seq`), `run` (`name`, `package`,
//!   `cpu_millis`, `mem_mib`: start it as a child unless it runs already), `drop` (`name`);
//! - from an agent to the leader: `pong` (`seq`, its capacity for children and what it runs).
//!
//! Every message is small and bounded: a `pong` lists at most [`MAX_REPORTS`] workloads.

use serde::{Deserialize, Serialize};

use crate::pack::Capacity;

/// Most workloads one `pong` reports.
pub const MAX_REPORTS: usize = 64;

/// One workload an agent runs, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    /// The child's workload id (empty when it could not be started).
    pub child: String,
    /// The child's state (`starting`, `running`, `failed`, …, or `gone`).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Msg {
    Submit {
        name: String,
        cpu_millis: u64,
        #[serde(alias = "mem_mb")]
        mem_mib: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        package: Option<String>,
    },
    Remove {
        name: String,
    },
    Status,
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
        capacity: Capacity,
        workloads: Vec<Report>,
    },
    Run {
        name: String,
        package: String,
        cpu_millis: u64,
        mem_mib: u64,
    },
    Drop {
        name: String,
    },
}

/// Parses a payload.
pub fn parse(payload: &[u8]) -> Result<Msg, String> {
    serde_json::from_slice(payload).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_op_and_the_old_field_name() {
        assert_eq!(
            parse(br#"{"op":"submit","name":"a","cpu_millis":1,"mem_mb":2}"#),
            Ok(Msg::Submit {
                name: "a".into(),
                cpu_millis: 1,
                mem_mib: 2,
                package: None
            })
        );
        assert_eq!(
            parse(
                br#"{"op":"submit","name":"a","cpu_millis":1,"mem_mib":2,"package":"hello@0.1.0"}"#
            ),
            Ok(Msg::Submit {
                name: "a".into(),
                cpu_millis: 1,
                mem_mib: 2,
                package: Some("hello@0.1.0".into())
            })
        );
        assert_eq!(
            parse(br#"{"op":"remove","name":"a"}"#),
            Ok(Msg::Remove { name: "a".into() })
        );
        assert_eq!(parse(br#"{"op":"status"}"#), Ok(Msg::Status));
        let pong = Msg::Pong {
            seq: 3,
            capacity: Capacity {
                cpu_millis: 900,
                mem_mib: 448,
            },
            workloads: vec![Report {
                name: "web".into(),
                child: "c".into(),
                state: "running".into(),
                reason: None,
            }],
        };
        let bytes = serde_json::to_vec(&pong).unwrap_or_default();
        assert_eq!(parse(&bytes), Ok(pong));
        assert!(parse(b"reset").is_err());
    }
}
