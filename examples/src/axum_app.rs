//! The demo schema behind axum: GraphQL over HTTP (async-graphql-axum), subscope on the
//! WebSocket side of the same `/graphql` route, a playground page from local assets at `/`,
//! and the gauges in Prometheus text format at `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use subscope::rt::Runtime;
use subscope::{Gauges, Hooks, Server};

use crate::DemoSchema;

/// The playground page (no CDN: everything it needs is in the page).
pub const PLAYGROUND: &str = include_str!("../assets/graphiql.html");

/// The router: `/` playground, `/graphql` (POST: HTTP, GET upgrade: subscope), `/metrics`.
pub fn router<H: Hooks, R: Runtime>(
    schema: DemoSchema,
    server: Server<DemoSchema, H, R>,
    gauges: Arc<Gauges>,
) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PLAYGROUND) }))
        .route(
            "/graphql",
            subscope_axum::get_route(server).post_service(async_graphql_axum::GraphQL::new(schema)),
        )
        .route(
            "/metrics",
            get(move || {
                let text = gauges.snapshot().to_prometheus();
                async move {
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
                }
            }),
        )
}
