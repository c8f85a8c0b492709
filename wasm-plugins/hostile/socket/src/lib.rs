//! Hostile: `tick` tries to connect over TCP to `127.0.0.1:22` and to bind a UDP socket. The
//! host grants no network, so both must fail: it logs `network denied`, or `ESCAPED` if
//! either succeeded.

use std::net::{TcpStream, UdpSocket};

use degroup_sdk::{Config, Plugin, error, export_plugin, info, warn};

struct Socket;

impl Plugin for Socket {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Socket)
    }

    fn tick(&mut self, _now_ms: u64) {
        let mut escaped = Vec::new();
        match TcpStream::connect("127.0.0.1:22") {
            Ok(_) => escaped.push("tcp connect 127.0.0.1:22"),
            Err(e) => warn!("tcp connect 127.0.0.1:22: {e}"),
        }
        match UdpSocket::bind("0.0.0.0:0") {
            Ok(_) => escaped.push("udp bind 0.0.0.0:0"),
            Err(e) => warn!("udp bind 0.0.0.0:0: {e}"),
        }
        if escaped.is_empty() {
            info!("network denied");
        } else {
            error!("ESCAPED: {}", escaped.join(", "));
        }
    }
}

export_plugin!(Socket);
