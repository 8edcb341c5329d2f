//! Serve subscope on an axum route.
//!
//! Keep your router and HTTP middleware; put subscope on a route: [`route`] serves every
//! transport there (WebSocket, graphql-sse, Apollo multipart, plain GraphQL over HTTP),
//! [`get_route`] only the WebSocket side (next to a GraphQL-over-HTTP handler of yours). Subprotocol negotiation is the standalone driver's: the
//! client's first offered token that is enabled is echoed and used; with none, the
//! upgrade completes and the socket is closed 4406.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! # use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! # async fn run() -> std::io::Result<()> {
//! let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let server = subscope_tokio::server(schema).build();
//! let app: Router = Router::new().route("/graphql", subscope_axum::route(server.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Both routes upgrade with subscope's own upgrade ([`Server::serve_upgrade`], on the
//! socket hyper hands over), so they answer every request as the standalone server does and
//! run permessage-deflate when [`subscope_core::Config::deflate`] is on; axum's
//! `WebSocketUpgrade` cannot (tungstenite refuses compressed frames), so [`upgrade`], which
//! takes one, serves uncompressed.
//!
//! Connections served this way are tracked by the subscope [`Server`]:
//! `server.shutdown(grace)` closes them 1001 and returns once every one is gone, even though
//! axum spawned their tasks.
//!
//! The hooks see the upgrade request ([`subscope_core::ConnectionInfo`]'s `uri`, `headers`
//! and, when the app is served with
//! `into_make_service_with_connect_info::<SocketAddr>()`, `peer`), and
//! [`subscope_core::Config::allowed_origins`] answers a foreign `Origin` with HTTP 403,
//! as the standalone server does. Close codes are the standalone driver's too: a message
//! above the size limit closes 1009, invalid UTF-8 closes 4400.
//!
//! Any other HTTP server works the same way: check the Origin with
//! [`Server::check_origin`], then hand [`Server::serve_websocket`] a
//! [`subscope_core::WebSocket`] (see [`AxumSocket`] for a mapping) and the subprotocol
//! [`subscope_core::negotiate`] picked.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_graphql::Executor;
use axum::extract::ws::{self, CloseFrame as AxumCloseFrame, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use futures_core::Stream;
use futures_sink::Sink;
use subscope_core::async_tungstenite::tungstenite::Error as WsError;
use subscope_core::rt::Runtime;
use subscope_core::websocket::{CloseFrame, Message, WebSocketError};
use subscope_core::{Hooks, Server, UpgradeRequest, negotiate};

/// axum's [`WebSocket`] as a subscope [`subscope_core::WebSocket`].
#[derive(Debug)]
pub struct AxumSocket(WebSocket);

impl From<WebSocket> for AxumSocket {
    fn from(socket: WebSocket) -> Self {
        Self(socket)
    }
}

impl AxumSocket {
    /// axum's socket back.
    pub fn into_inner(self) -> WebSocket {
        self.0
    }
}

/// axum wraps tungstenite's error; unwrapped, it says "too big" or "invalid UTF-8" in the
/// protocol's terms, so the peer gets 1009 or 4400 as on the standalone server.
fn transport_error(err: axum::Error) -> WebSocketError {
    match err.into_inner().downcast::<WsError>() {
        Ok(ws) => WebSocketError::from(*ws),
        Err(other) => WebSocketError::Other(other),
    }
}

impl Stream for AxumSocket {
    type Item = Result<Message, WebSocketError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|item| {
            item.map(|msg| {
                msg.map_err(transport_error).map(|msg| match msg {
                    ws::Message::Text(t) => Message::Text(t.as_str().to_owned()),
                    ws::Message::Binary(_) => Message::Binary,
                    ws::Message::Ping(_) => Message::Ping,
                    ws::Message::Pong(_) => Message::Pong,
                    ws::Message::Close(frame) => {
                        Message::Close(frame.map(|f| CloseFrame::new(f.code, f.reason.as_str())))
                    }
                })
            })
        })
    }
}

impl Sink<Message> for AxumSocket {
    type Error = WebSocketError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0)
            .poll_ready(cx)
            .map_err(transport_error)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let msg = match item {
            Message::Text(t) => ws::Message::Text(t.into()),
            Message::Binary => ws::Message::Binary(Default::default()),
            Message::Ping => ws::Message::Ping(Default::default()),
            Message::Pong => ws::Message::Pong(Default::default()),
            Message::Close(frame) => ws::Message::Close(frame.map(|f| AxumCloseFrame {
                code: f.code,
                reason: f.reason.into(),
            })),
            // A message kind added later that axum cannot carry: refuse it loudly.
            other => {
                return Err(WebSocketError::Other(
                    format!("axum cannot send {other:?}").into(),
                ));
            }
        };
        Pin::new(&mut self.0)
            .start_send(msg)
            .map_err(transport_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0)
            .poll_flush(cx)
            .map_err(transport_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0)
            .poll_close(cx)
            .map_err(transport_error)
    }
}

/// Answers one upgrade request with subscope: refuses a foreign `Origin` with HTTP 403,
/// negotiates the subprotocol (client's order), applies the server's message size limit,
/// and serves the socket once upgraded. `request` is what the hooks will see. Never
/// compressed: axum's WebSocket cannot carry permessage-deflate (the routes can).
pub fn upgrade<E, H, R>(
    server: &Server<E, H, R>,
    upgrade: WebSocketUpgrade,
    request: UpgradeRequest,
) -> Response
where
    E: Executor,
    H: Hooks,
    R: Runtime,
{
    if server.check_origin(&request).is_err() {
        return (StatusCode::FORBIDDEN, "Origin not allowed").into_response();
    }
    let offered = request
        .headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let protocol = negotiate(offered, server.config().enabled_subprotocols());
    // Exactly the chosen token, so axum echoes it and nothing else.
    let upgrade = match protocol {
        Some(p) => upgrade.protocols([p.token()]),
        None => upgrade,
    };
    let limit = server.config().max_message_size_bytes();
    let server = server.clone();
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            server
                .serve_websocket(AxumSocket::from(socket), protocol, request)
                .await;
        })
}

/// A route serving every subscope transport on one path, for `Router::route`: WebSocket
/// upgrades, graphql-sse (both modes), Apollo multipart subscriptions and plain GraphQL
/// over HTTP (`GET`, `POST`, `PUT`, `DELETE`), exactly as the standalone server answers
/// them. Each HTTP stream's body owns its operations, so a client that leaves (axum drops
/// the body) frees them, and `server.shutdown(grace)` ends every stream and returns once
/// their operations are gone. axum has no write timeout: a client that stops reading
/// holds its stream until shutdown's grace ends or the connection fails.
pub fn route<E, H, R, S>(server: Server<E, H, R>) -> MethodRouter<S>
where
    E: Executor,
    H: Hooks,
    R: Runtime,
    S: Clone + Send + Sync + 'static,
{
    axum::routing::any(move |request: Request| {
        let server = server.clone();
        async move {
            // The standalone server's test, so both answer the same requests the same way.
            if subscope_core::is_websocket_upgrade(request.headers()) {
                return websocket(&server, request).await;
            }
            let peer = peer(request.extensions());
            server
                .serve_http(request, peer)
                .await
                .map(axum::body::Body::new)
        }
    })
}

/// The `ConnectInfo<SocketAddr>` peer, when the app is served with it.
fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// Serves a WebSocket upgrade with subscope's own upgrade ([`Server::serve_upgrade`]) on
/// the socket hyper hands over: the standalone server's answers to every request, and
/// permessage-deflate when [`subscope_core::Config::deflate`] is on (axum's own
/// `WebSocketUpgrade` cannot carry it: tungstenite refuses compressed frames).
async fn websocket<E, H, R>(server: &Server<E, H, R>, request: Request) -> Response
where
    E: Executor,
    H: Hooks,
    R: Runtime,
{
    let peer = peer(request.extensions());
    server
        .serve_upgrade(request, peer)
        .map(axum::body::Body::new)
}

/// A `GET` route serving subscope's WebSocket only (keep your own HTTP handlers on the
/// route's other methods), for `Router::route`. The hooks see the request's URI
/// and headers, and its peer when the app is served with `ConnectInfo<SocketAddr>`.
pub fn get_route<E, H, R, S>(server: Server<E, H, R>) -> MethodRouter<S>
where
    E: Executor,
    H: Hooks,
    R: Runtime,
    S: Clone + Send + Sync + 'static,
{
    axum::routing::get(move |request: Request| {
        let server = server.clone();
        async move { websocket(&server, request).await }
    })
}
