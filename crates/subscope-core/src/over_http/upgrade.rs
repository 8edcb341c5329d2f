//! The WebSocket upgrade on hyper: RFC 6455's checks, the Origin allow-list and the
//! subprotocol choice, answered with `101 Switching Protocols` (or the HTTP error).

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;

use super::HttpBody;
use crate::compression::Agreed;
use crate::{Config, Subprotocol, UpgradeRequest, negotiate};

/// What an upgrade request left for the connection task, after hyper has answered it.
pub(crate) enum Outcome {
    /// Upgraded: take the socket and run the WebSocket.
    Upgrade {
        on_upgrade: OnUpgrade,
        protocol: Option<Subprotocol>,
        request: Box<UpgradeRequest>,
        /// permessage-deflate, when agreed.
        deflate: Option<Agreed>,
    },
    /// Refused with 403: the origin is not allowed.
    OriginRefused(String),
}

fn plain(status: StatusCode, text: &'static str) -> Response<HttpBody> {
    super::response(status, super::TEXT, text)
}

/// Answers a WebSocket upgrade request: `101` and the [`Outcome`] to run, or an error
/// response (and, for a refused origin, the outcome that says so).
pub(crate) fn accept_upgrade<B>(
    config: &Config,
    request: &mut Request<B>,
) -> (Response<HttpBody>, Option<Outcome>) {
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrades use GET");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return (response, None);
    }
    let headers = request.headers();
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut response = plain(
            StatusCode::UPGRADE_REQUIRED,
            "Sec-WebSocket-Version must be 13",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return (response, None);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return (
            plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing"),
            None,
        );
    };
    let mut response = Response::new(HttpBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    accept(config, request, response)
}

/// Whether `request` is an RFC 8441 WebSocket over HTTP/2: extended `CONNECT` with
/// `:protocol websocket` (hyper sees it only when the setting was advertised).
pub(crate) fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Answers an RFC 8441 extended `CONNECT` on an HTTP/2 stream: `200` and the
/// [`Outcome`] (the stream becomes the WebSocket's bytes), or an error response. The same
/// Origin, subprotocol and permessage-deflate rules as the HTTP/1.1 upgrade; there is no
/// key to answer (RFC 8441 section 5).
pub(crate) fn accept_connect<B>(
    config: &Config,
    request: &mut Request<B>,
) -> (Response<HttpBody>, Option<Outcome>) {
    let version_ok = request
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut response = plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return (response, None);
    }
    accept(config, request, Response::new(HttpBody::empty()))
}

/// The checks and answers both handshakes share: Origin, subprotocol, permessage-deflate,
/// then the pending upgrade. `response` carries the handshake's own status and headers.
fn accept<B>(
    config: &Config,
    request: &mut Request<B>,
    mut response: Response<HttpBody>,
) -> (Response<HttpBody>, Option<Outcome>) {
    let headers = request.headers();
    let upgrade = super::request::detached_request(request.uri(), headers);
    if !config.is_origin_allowed(upgrade.origin()) {
        let origin = upgrade.origin().unwrap_or_default().to_owned();
        return (
            plain(StatusCode::FORBIDDEN, "Origin not allowed"),
            Some(Outcome::OriginRefused(origin)),
        );
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let protocol = negotiate(offered, &config.subprotocols);
    let out = response.headers_mut();
    if let Some(p) = protocol {
        out.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(p.token()),
        );
    }
    let deflate = negotiate_deflate(config, request.headers(), out);
    let on_upgrade = hyper::upgrade::on(request);
    (
        response,
        Some(Outcome::Upgrade {
            on_upgrade,
            protocol,
            request: Box::new(upgrade),
            deflate,
        }),
    )
}

/// Accepts the client's permessage-deflate offer when the server has it on, answering in
/// `out`; `None` when either side does not want it (the connection runs uncompressed).
#[cfg(feature = "deflate")]
pub(crate) fn negotiate_deflate(
    config: &Config,
    headers: &http::HeaderMap,
    out: &mut http::HeaderMap,
) -> Option<Agreed> {
    let settings = config.deflate.as_ref()?;
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let agreed = subscope_deflate::negotiate(offers, settings)?;
    let value = HeaderValue::from_str(&agreed.response()).ok()?;
    out.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    Some(agreed)
}

/// Without the `deflate` feature no extension is ever agreed.
#[cfg(not(feature = "deflate"))]
pub(crate) fn negotiate_deflate(
    _config: &Config,
    _headers: &http::HeaderMap,
    _out: &mut http::HeaderMap,
) -> Option<Agreed> {
    None
}
