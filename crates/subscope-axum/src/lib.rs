//! Serve subscope on an axum route.
//!
//! Keep your router, HTTP middleware and GraphQL-over-HTTP endpoint; put subscope on the
//! WebSocket side of a route. Subprotocol negotiation is the standalone driver's: the
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
//! let app: Router = Router::new().route("/graphql", subscope_axum::get_route(server.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Connections served this way are tracked by the subscope [`Server`]:
//! `server.shutdown(grace)` closes them 1001 and returns once every one is gone, even though
//! axum spawned their tasks.
//!
//! Any other HTTP server works the same way: hand [`Server::serve_websocket`] a
//! `Stream + Sink` of tungstenite messages (see [`AxumSocket`] for the mapping) and the
//! subprotocol [`subscope_core::negotiate`] picked.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_graphql::Executor;
use axum::extract::ws::{self, CloseFrame, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::response::Response;
use axum::routing::MethodRouter;
use futures_core::Stream;
use futures_sink::Sink;
use subscope_core::async_tungstenite::tungstenite::protocol::CloseFrame as TungsteniteCloseFrame;
use subscope_core::async_tungstenite::tungstenite::{Error as WsError, Message};
use subscope_core::rt::Runtime;
use subscope_core::{Hooks, Server, negotiate};

/// axum's [`WebSocket`] seen as a subscope transport (tungstenite messages and errors).
#[derive(Debug)]
pub struct AxumSocket(pub WebSocket);

fn to_ws_error(err: axum::Error) -> WsError {
    WsError::Io(std::io::Error::other(err))
}

impl Stream for AxumSocket {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|item| {
            item.map(|msg| {
                msg.map_err(to_ws_error).map(|msg| match msg {
                    ws::Message::Text(t) => Message::text(t.as_str()),
                    ws::Message::Binary(b) => Message::Binary(b),
                    ws::Message::Ping(b) => Message::Ping(b),
                    ws::Message::Pong(b) => Message::Pong(b),
                    ws::Message::Close(frame) => {
                        Message::Close(frame.map(|f| TungsteniteCloseFrame {
                            code: f.code.into(),
                            reason: f.reason.as_str().into(),
                        }))
                    }
                })
            })
        })
    }
}

impl Sink<Message> for AxumSocket {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.0).poll_ready(cx).map_err(to_ws_error)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        let msg = match item {
            Message::Text(t) => ws::Message::Text(t.as_str().into()),
            Message::Binary(b) => ws::Message::Binary(b),
            Message::Ping(b) => ws::Message::Ping(b),
            Message::Pong(b) => ws::Message::Pong(b),
            Message::Close(frame) => ws::Message::Close(frame.map(|f| CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            })),
            // Raw frames are never produced by subscope.
            Message::Frame(_) => return Ok(()),
        };
        Pin::new(&mut self.0).start_send(msg).map_err(to_ws_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.0).poll_flush(cx).map_err(to_ws_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.0).poll_close(cx).map_err(to_ws_error)
    }
}

/// Answers one upgrade request with subscope: negotiates the subprotocol (client's order),
/// applies the server's message size limit, and serves the socket once upgraded.
pub fn upgrade<E, H, R>(
    server: &Server<E, H, R>,
    upgrade: WebSocketUpgrade,
    headers: &HeaderMap,
) -> Response
where
    E: Executor,
    H: Hooks,
    R: Runtime,
{
    let offered = headers
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
                .serve_websocket(AxumSocket(socket), protocol, None)
                .await;
        })
}

/// A `GET` route serving subscope, for `Router::route`.
pub fn get_route<E, H, R, S>(server: Server<E, H, R>) -> MethodRouter<S>
where
    E: Executor,
    H: Hooks,
    R: Runtime,
    S: Clone + Send + Sync + 'static,
{
    axum::routing::get(move |ws: WebSocketUpgrade, headers: HeaderMap| {
        let server = server.clone();
        async move { upgrade(&server, ws, &headers) }
    })
}
