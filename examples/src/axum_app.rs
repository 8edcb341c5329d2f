//! The demo schema behind axum: GraphQL over HTTP (async-graphql-axum), subscope on the
//! WebSocket side of the same `/graphql` route, a playground page from local assets at `/`,
//! and the gauges in Prometheus text format at `/metrics`.
//!
//! Both sides of `/graphql` authenticate with the same [`TokenAuth`]: the WebSocket in
//! `on_connect` (init payload or `Authorization` header), HTTP from the `Authorization:
//! Bearer` header (401 without a valid one). Resolvers see the same `User` either way.

use std::sync::Arc;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use subscope::rt::Runtime;
use subscope::{Gauges, Hooks, Server};

use crate::DemoSchema;
use crate::auth::TokenAuth;

/// The playground page (no CDN: everything it needs is in the page).
pub const PLAYGROUND: &str = include_str!("../assets/graphiql.html");

/// The router: `/` playground, `/graphql` (POST: HTTP, GET upgrade: subscope), `/metrics`.
pub fn router<H: Hooks, R: Runtime>(
    schema: DemoSchema,
    server: Server<DemoSchema, H, R>,
    gauges: Arc<Gauges>,
    http_auth: TokenAuth,
) -> Router {
    let http = move |headers: HeaderMap, request: GraphQLRequest| {
        let (schema, auth) = (schema.clone(), http_auth.clone());
        async move {
            let Some(user) = auth.authenticate(TokenAuth::bearer(&headers)) else {
                return (StatusCode::UNAUTHORIZED, "invalid or missing token").into_response();
            };
            let request = request.into_inner().data(user);
            GraphQLResponse::from(schema.execute(request).await).into_response()
        }
    };
    Router::new()
        .route("/", get(|| async { Html(PLAYGROUND) }))
        .route("/graphql", subscope_axum::get_route(server).post(http))
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
