//! The README's example, kept compiling: an authenticated server with graceful shutdown.
//!
//! `cargo run -p subscope-examples --bin quickstart`

use async_graphql::{EmptyMutation, Object, Schema, Subscription};
use futures_lite::stream::{self, Stream};
use subscope::{Accept, ConnectionInfo, Hooks, Reject};

struct Query;
#[Object]
impl Query {
    async fn hello(&self) -> &str {
        "world"
    }
}

struct Sub;
#[Subscription]
impl Sub {
    async fn numbers(&self) -> impl Stream<Item = i32> {
        stream::iter(0..3)
    }
}

/// Authenticate on `connection_init`; the user is available to resolvers as `ctx.data::<String>()`.
struct Auth;
impl Hooks for Auth {
    async fn on_connect(
        &self,
        _: &ConnectionInfo,
        payload: Option<serde_json::Value>,
    ) -> Result<Accept, Reject> {
        match payload.as_ref().and_then(|p| p["token"].as_str()) {
            Some("secret") => Ok(Accept::new().data(String::from("alice"))),
            _ => Err(Reject::forbidden("bad token")), // 4403 (legacy: connection_error + 1011)
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let schema = Schema::new(Query, EmptyMutation, Sub);
    let server = subscope::tokio::server(schema)
        .hooks(Auth)
        .config(subscope::Config::default().max_subscriptions(50))
        .build();
    let listener = subscope::tokio::TcpListener::bind("127.0.0.1:8000").await?;
    let signal = subscope::tokio::shutdown_signal(); // Ctrl-C or SIGTERM
    // Returns only when every connection, and so every subscription, has been dropped.
    server
        .serve_with_shutdown(listener, signal, std::time::Duration::from_secs(5))
        .await
}
