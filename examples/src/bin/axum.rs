//! The demo schema on axum: `cargo run -p subscope-examples --bin axum -- --addr 127.0.0.1:8080`
//!
//! `/` a playground page, `/graphql` GraphQL over HTTP (POST) and over WebSocket (both
//! subprotocols, served by subscope), `/metrics` the gauges for Prometheus.
//! `--auth-token TOKEN` requires that token on both (HTTP: `Authorization: Bearer TOKEN`).
//!
//! Ctrl-C shuts down gracefully, in this order: one signal starts both axum's graceful
//! shutdown (no new TCP connections; HTTP requests in flight finish) and subscope's
//! (every WebSocket closed 1001 `Going away`, its subscriptions dropped); an upgrade that
//! arrives in between is completed and closed 1001 at once. The process exits when both
//! are done: axum does not wait for upgraded sockets, subscope's shutdown does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use subscope::Gauges;
use subscope::tokio::TokioRuntime;
use subscope_examples::auth::TokenAuth;
use subscope_examples::{Broker, LiveCounter, axum_app, build_schema};

const USAGE: &str = "usage: axum [--addr HOST:PORT] [--auth-token TOKEN]";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    subscope_examples::init_tracing();
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut auth = TokenAuth::open();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(a)) => addr = a.parse().map_err(std::io::Error::other)?,
            ("--auth-token", Some(t)) => auth = TokenAuth::new([(t, "demo")]),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let gauges = Arc::new(Gauges::new());
    let broker = Broker::memory(Default::default());
    let schema = build_schema(
        Arc::new(TokioRuntime::new()),
        Arc::clone(&gauges),
        broker.clone(),
        LiveCounter::default(),
    );
    let server = broker
        .bind(
            subscope::tokio::server(schema.clone())
                .hooks(auth.clone())
                .gauges(Arc::clone(&gauges)),
        )
        .build();
    let app = axum_app::router(schema, server.clone(), gauges, auth);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "listening on http://{}/ (GraphQL over HTTP and WebSocket at /graphql, metrics at /metrics)",
        listener.local_addr()?
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let axum_stop = async move {
        let _ = stop_rx.changed().await;
    };
    // ConnectInfo gives the hooks the peer's address.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let http = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(axum_stop)
            .await
    });
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop_tx.send(true);
    server.shutdown(Duration::from_secs(5)).await;
    http.await.map_err(std::io::Error::other)?
}
