//! The demo schema on axum: `cargo run -p subscope-examples --bin axum -- --addr 127.0.0.1:8080`
//!
//! `/` a playground page, `/graphql` GraphQL over HTTP (POST) and over WebSocket (both
//! subprotocols, served by subscope), `/metrics` the gauges for Prometheus. Ctrl-C shuts
//! down gracefully: every WebSocket is closed 1001 before the process exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use subscope::Gauges;
use subscope::tokio::TokioRuntime;
use subscope_examples::{Broker, LiveCounter, axum_app, build_schema};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    subscope_examples::init_tracing();
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match (args.next().as_deref(), args.next()) {
        (Some("--addr"), Some(a)) => a.parse().map_err(std::io::Error::other)?,
        (None, _) => SocketAddr::from(([127, 0, 0, 1], 8080)),
        _ => {
            eprintln!("usage: axum [--addr HOST:PORT]");
            std::process::exit(2);
        }
    };
    let gauges = Arc::new(Gauges::new());
    let schema = build_schema(
        Arc::new(TokioRuntime::new()),
        Arc::clone(&gauges),
        Broker::memory(Default::default(), Arc::clone(&gauges)),
        LiveCounter::default(),
    );
    let server = subscope::tokio::server(schema.clone())
        .gauges(Arc::clone(&gauges))
        .build();
    let app = axum_app::router(schema, server.clone(), gauges);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "listening on http://{}/ (GraphQL over HTTP and WebSocket at /graphql, metrics at /metrics)",
        listener.local_addr()?
    );
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown(Duration::from_secs(5)).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
