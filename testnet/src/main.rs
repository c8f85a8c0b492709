//! # degroup-testnet
//!
//! Runs many local degroup nodes on one machine: scenarios, fault injection and benchmarks.
//! The first commands land with the federated-capacity issue.

fn main() {
    eprintln!("degroup-testnet: no commands yet");
}
