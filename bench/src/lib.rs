//! Shared pieces of the benchmark binaries: announcing the listening address.

use std::net::SocketAddr;

/// Prints the line `cargo xtask bench` waits for.
pub fn announce(addr: SocketAddr) {
    println!("listening on ws://{addr}/graphql");
}
