//! Shared pieces of the benchmark binaries: announcing the listening address, and the load
//! generator's TLS and HTTP/2 client side ([`port`]).

use std::net::SocketAddr;

pub mod port;

/// Prints the line `cargo xtask bench` waits for.
pub fn announce(addr: SocketAddr) {
    println!("listening on ws://{addr}/graphql");
}
