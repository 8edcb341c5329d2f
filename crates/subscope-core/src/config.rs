//! Timeouts and limits, with the defaults of `docs/PROTOCOL.md` section 4.

use std::time::Duration;

use subscope_protocol::{Rate, Settings, Subprotocol};

/// Per-server settings. Build with [`Config::default`] and the setters.
///
/// Every timeout that can be turned off is an `Option<Duration>`: `None` disables it, and a
/// zero duration means zero (it fires at once), never a hidden "off". The setters take
/// `impl Into<Option<Duration>>`, so `init_timeout(Duration::from_secs(5))` and
/// `init_timeout(None)` both read naturally.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// What the protocol layer enforces (timeouts and per-connection limits).
    pub(crate) protocol: Settings,
    pub(crate) close_timeout: Duration,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) max_message_size: usize,
    pub(crate) max_connections: Option<usize>,
    pub(crate) subprotocols: Vec<Subprotocol>,
    pub(crate) detect_leaks: bool,
    /// `None`: every origin. `Some(list)`: only these (lowercase, no trailing slash).
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) share_identical: bool,
    pub(crate) shared_delivery: crate::Delivery,
    pub(crate) http_heartbeat: Option<Duration>,
    pub(crate) max_http_streams: Option<usize>,
    pub(crate) max_pending_reservations: usize,
    pub(crate) sse_retry: Option<Duration>,
    pub(crate) drain: Duration,
    pub(crate) graphql_path: String,
    pub(crate) metrics: bool,
    pub(crate) graphiql: bool,
    pub(crate) document_cache: usize,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<subscope_deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: Settings::default(),
            close_timeout: Duration::from_secs(1),
            handshake_timeout: Some(Duration::from_secs(10)),
            max_message_size: 1024 * 1024,
            max_connections: None,
            subprotocols: Subprotocol::ALL.to_vec(),
            detect_leaks: false,
            allowed_origins: None,
            share_identical: false,
            shared_delivery: crate::Delivery::default(),
            http_heartbeat: Some(Duration::from_secs(12)),
            #[cfg(feature = "deflate")]
            deflate: None,
            max_http_streams: None,
            max_pending_reservations: 10_000,
            sse_retry: None,
            drain: Duration::ZERO,
            graphql_path: "/graphql".to_owned(),
            metrics: false,
            graphiql: false,
            document_cache: 256,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Config {
    /// Time a client has after the upgrade to send `connection_init`; the peer then sees
    /// close 4408 `Connection initialisation timeout`. `None` disables. Default is 3 s.
    #[must_use]
    pub fn init_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.protocol.init_timeout = d.into();
        self
    }

    /// Interval of WebSocket ping frames, and of `ka` messages on the legacy subprotocol.
    /// `None` disables both (and with them the liveness check). Default is 12 s.
    #[must_use]
    pub fn keepalive_interval(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.protocol.keepalive_interval = d.into();
        self
    }

    /// How long after a ping the peer may stay silent (no frame of any kind) before the
    /// socket is dropped without a close frame (the peer sees 1006). `None` keeps sending
    /// pings but never drops a silent peer for it. Default is 12 s.
    #[must_use]
    pub fn keepalive_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.protocol.keepalive_timeout = d.into();
        self
    }

    /// How long writing may make no progress (peer not reading) before the socket is
    /// dropped without a close frame; the timer restarts whenever a frame goes out, so a
    /// slow but reading peer is not cut. `None` disables (a peer that never reads then
    /// holds its connection until the liveness check ends it). Default is 10 s.
    #[must_use]
    pub fn write_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.protocol.write_timeout = d.into();
        self
    }

    /// How long to try to deliver our close frame and wait for the peer's answer before
    /// dropping the socket. Default is 1 s.
    #[must_use]
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// Time a TCP client has to finish the HTTP upgrade; then the TCP connection is dropped.
    /// `None` disables (not advisable on a public port). Default is 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.handshake_timeout = d.into();
        self
    }

    /// Live operations per connection (preparing or streaming). Past it a `subscribe` gets
    /// `error` `[{"message":"Subscription limit reached"}]` and the socket stays open.
    /// Default is 100.
    #[must_use]
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.protocol.max_subscriptions = n;
        self
    }

    /// Largest inbound message in bytes; a larger one closes 1009 `Message too big`.
    /// Default is 1 MiB.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// permessage-deflate (RFC 7692) for WebSocket clients that offer it, with these
    /// settings; `None` (the default): never, every connection runs uncompressed.
    ///
    /// Off by default because it trades CPU for bytes: compressing costs CPU per event per
    /// connection (about 3 times a plain send for small events). Memory is not the
    /// price: at the default settings a compressed connection keeps the last 2 KiB it
    /// sent and no zlib stream, at most 4 KiB more than a plain one at every instant. Turn
    /// it on where the network is what runs out; see
    /// [`DeflateConfig`](subscope_deflate::DeflateConfig) for the knobs.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn deflate(mut self, deflate: Option<subscope_deflate::DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// How often an idle HTTP event stream (SSE, multipart) gets a keep-alive: an SSE
    /// comment `:` or an empty multipart part `{}` (default 12 s, below the 30–60 s idle
    /// timeouts common in proxies and load balancers; `None`: never).
    #[must_use]
    pub fn http_heartbeat(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.http_heartbeat = d.into();
        self
    }

    /// The reconnection delay an SSE stream tells browsers (`retry:` at the start of the
    /// stream), so a resuming `EventSource` comes back quickly (default `None`: the
    /// browser's own, about 3 s). Set it when your topics keep history.
    #[must_use]
    pub fn sse_retry(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.sse_retry = d.into();
        self
    }

    /// The drain window of a graceful shutdown (default zero: everything at once).
    /// Readiness turns false and the listener stops at once; connections and HTTP streams
    /// are then closed spread evenly over the window (WebSocket 1001, SSE streams end), so
    /// a fleet's clients do not all reconnect in the same second; then the join.
    #[must_use]
    pub fn drain(mut self, window: Duration) -> Self {
        self.drain = window;
        self
    }

    /// The path the standalone server serves GraphQL on, every transport (default
    /// `/graphql`). Other paths answer 404, except `GET /healthz`, `GET /readyz` and, when
    /// on, `GET /metrics`. Under another HTTP server (axum) that server routes instead.
    #[must_use]
    pub fn graphql_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.graphql_path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self
    }

    /// Serve the gauges in Prometheus text format on `GET /metrics` of the standalone
    /// server (default off).
    #[must_use]
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Serve TLS on the standalone server's port (every transport; ALPN `h2` and
    /// `http/1.1`). The handshake counts against [`Config::handshake_timeout`]; a
    /// failed one is counted (`tls_handshake_failures`) and logged at debug.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: crate::tls::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Whether TLS is configured ([`Config::tls`]).
    #[cfg(feature = "tls")]
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serve the GraphiQL IDE on `GET` of the GraphQL path to browsers (`Accept:
    /// text/html`, no `query` parameter); default off. Queries and mutations from the page
    /// go over HTTP, subscriptions over graphql-transport-ws, on the same URL. The page
    /// loads GraphiQL, React and graphql-ws from unpkg.com (pinned versions), so the
    /// browser needs to reach it.
    #[must_use]
    pub fn graphiql(mut self, on: bool) -> Self {
        self.graphiql = on;
        self
    }

    /// How many parsed documents the server keeps, keyed by query text, for every transport
    /// (default 256; 0 parses every request). Only documents of at most 4 KiB of text are
    /// kept, the oldest inserted goes first, so the cache holds at most `documents` × 4 KiB
    /// of text and their parsed trees, whatever clients send. A client that repeats a
    /// document (a producer's `publish` with variables) skips the parser. Hits and misses
    /// are counted (`document_cache_hits`, `document_cache_misses`).
    #[must_use]
    pub fn document_cache(mut self, documents: usize) -> Self {
        self.document_cache = documents;
        self
    }

    /// The path GraphQL is served on ([`Config::graphql_path`]).
    pub fn graphql_path_str(&self) -> &str {
        &self.graphql_path
    }

    /// The drain window ([`Config::drain`]).
    pub fn drain_window(&self) -> Duration {
        self.drain
    }

    /// At most this many HTTP event streams at once (SSE and multipart responses, and
    /// single-connection reservations); one more is answered 503 with `Retry-After`.
    /// Default: `None`, no limit (memory is bounded per stream, like a connection).
    #[must_use]
    pub fn max_http_streams(mut self, n: Option<usize>) -> Self {
        self.max_http_streams = n;
        self
    }

    /// At most this many graphql-sse single-connection reservations (`PUT`) not yet opened
    /// by their stream, server-wide; one more is answered 503 with `Retry-After`. An honest
    /// client holds one for a round trip, so the default (10,000) only stops a flood of
    /// `PUT`s from growing the table (each reservation also expires after the handshake
    /// timeout).
    #[must_use]
    pub fn max_pending_reservations(mut self, n: usize) -> Self {
        self.max_pending_reservations = n;
        self
    }

    /// Live connections per server; past it the upgrade completes and the socket is closed
    /// 1013 `Try again later`. `None` (the default) means unlimited.
    #[must_use]
    pub fn max_connections(mut self, n: Option<usize>) -> Self {
        self.max_connections = n;
        self
    }

    /// The subprotocols offered, in no particular order (the client's order decides).
    /// Default is both.
    #[must_use]
    pub fn subprotocols(mut self, protocols: &[Subprotocol]) -> Self {
        self.subprotocols = protocols.to_vec();
        self
    }

    /// Leak detection: each operation gets an [`crate::OperationToken`] in its request
    /// data; if a clone of it outlives the operation's stream (user code kept it), the
    /// operation is reported through `tracing` (target `subscope::leak`, with its id and
    /// operation name) and counted in the gauges. Costs one small allocation per
    /// operation. Default is off.
    #[must_use]
    pub fn detect_leaks(mut self, on: bool) -> Self {
        self.detect_leaks = on;
        self
    }

    /// Longest operation id in bytes. A longer one is an invalid message: close 4400
    /// `Invalid message received` (legacy: `connection_error`, socket stays open).
    /// Default is 128.
    #[must_use]
    pub fn max_id_length(mut self, bytes: usize) -> Self {
        self.protocol.max_id_length = bytes;
        self
    }

    /// Largest `connection_init` message in bytes (its payload is what `on_connect`
    /// parses). A larger one is an invalid message: close 4400 (legacy:
    /// `connection_error`). Default is 64 KiB.
    #[must_use]
    pub fn max_init_size(mut self, bytes: usize) -> Self {
        self.protocol.max_init_size = bytes;
        self
    }

    /// Inbound messages (text, binary and ping frames) allowed per connection, as a token
    /// bucket. Past it the peer sees close 1008 `Rate limit exceeded`. `None` disables.
    ///
    /// Default: off. A legitimate publisher pipelining mutations runs at whatever speed
    /// the link allows (tens of thousands of messages per second on a LAN), so no fixed
    /// default is both safe for it and useful against abuse; memory is bounded without it
    /// (the driver stops reading while its replies cannot be written). On a public
    /// endpoint, set a rate from your own clients' profile, e.g. `Rate::new(1000, 2000)`
    /// for browsers that subscribe and ping.
    #[must_use]
    pub fn inbound_rate(mut self, rate: Option<Rate>) -> Self {
        self.protocol.inbound_rate = rate;
        self
    }

    /// Largest outbound message in bytes. An operation whose next response would be larger
    /// ends with `error` `[{"message":"Response too large"}]` (its `on_complete` sees
    /// [`crate::EndReason::ResponseTooLarge`]); the connection and its other operations go
    /// on. It also sizes the socket's write buffer, so no single response can overflow it.
    /// Default is 32 MiB.
    #[must_use]
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.protocol.max_response_size = bytes;
        self
    }

    /// Browser origins allowed to open a WebSocket, such as `https://app.example.com`
    /// (scheme, host and port; compared ignoring ASCII case). An upgrade whose `Origin`
    /// header is not in the list is refused with HTTP 403, counted in
    /// [`crate::GaugeSnapshot::origins_refused`] and logged; an upgrade with no `Origin`
    /// (a client that is not a browser) is allowed.
    ///
    /// Default: every origin. Set it when connections are authenticated by cookies (or any
    /// credential the browser attaches by itself): a browser sends those cookies on a
    /// WebSocket upgrade from *any* site, and the same-origin policy does not apply to
    /// WebSockets, so without this list a page on another site can open a socket as the
    /// logged-in user (cross-site WebSocket hijacking). Token-in-`connection_init`
    /// authentication is not exposed that way.
    ///
    /// ```
    /// let config = subscope_core::Config::default()
    ///     .allowed_origins(["https://app.example.com", "http://localhost:3000/"]);
    /// assert!(config.is_origin_allowed(Some("https://APP.example.com")));
    /// assert!(config.is_origin_allowed(Some("http://localhost:3000")));
    /// assert!(!config.is_origin_allowed(Some("https://evil.example")));
    /// assert!(config.is_origin_allowed(None));
    /// ```
    pub fn allowed_origins<I>(mut self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|o| o.as_ref().trim().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        self.allowed_origins = Some(list);
        self
    }

    /// Share one execution among operations whose document, operation name and variables
    /// are equal, when [`crate::Hooks::share_key`] gives no key (default: off). Only for
    /// schemas whose results do not depend on who asks; otherwise return a key that
    /// includes the context from `share_key`.
    pub fn share_identical(mut self, on: bool) -> Self {
        self.share_identical = on;
        self
    }

    /// The per-subscriber buffer and overflow policy of shared executions (default:
    /// [`crate::Delivery::default`], 1024 events, `Overflow::End`). A subscriber that falls
    /// that far behind lags alone; the others go on.
    pub fn shared_delivery(mut self, delivery: crate::Delivery) -> Self {
        self.shared_delivery = delivery;
        self
    }

    /// Allows every origin again (the default).
    pub fn allow_any_origin(mut self) -> Self {
        self.allowed_origins = None;
        self
    }

    /// Whether an upgrade with this `Origin` header value (`None`: no header) may proceed.
    pub fn is_origin_allowed(&self, origin: Option<&str>) -> bool {
        match (&self.allowed_origins, origin) {
            (None, _) | (Some(_), None) => true,
            (Some(list), Some(origin)) => {
                let origin = origin.trim();
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }

    /// The most memory one connection's buffers can hold with this configuration,
    /// whatever the peer sends (operation state, i.e. what resolvers keep, comes on top and
    /// is bounded by [`Config::max_subscriptions`]). With `M` = `max_message_size` and
    /// `R` = the largest outbound frame, `max(max_response_size + 6·max_id_length + 64,
    /// M + 256)` (a result at the limit in its envelope, the id JSON-escaped):
    ///
    /// | buffer | bound |
    /// | --- | --- |
    /// | tungstenite read buffer and the message being reassembled | 2 KiB + 2·M |
    /// | messages held while `on_connect` runs | 64 KiB + M |
    /// | outbound queue (reading and polling stop at 32 frames or 64 KiB) | 64 KiB + 64 KiB + 64·256 + R |
    /// | tungstenite write buffer (128 KiB, then one more frame) | 128 KiB + R |
    ///
    /// Those are lengths; growable buffers may hold up to twice their length in capacity,
    /// so the bound returned is twice their sum. The defaults (1 MiB messages, 32 MiB
    /// responses) give about 137 MiB, almost all of it room for the two largest responses
    /// an operation may produce (lower `max_response_size` if your events are small). A
    /// peer flooding 15 KiB pings without reading, with 16 KiB limits, holds about 480 KiB
    /// (bound about 851 KiB), measured in `subscope-testbench`'s memory test.
    pub fn connection_buffer_bound(&self) -> usize {
        crate::bounds::connection_buffer_bound(
            self.max_message_size,
            self.protocol.max_response_size,
            self.protocol.max_id_length,
            #[cfg(feature = "deflate")]
            self.deflate.as_ref(),
        )
    }

    /// The largest outbound message in bytes (see [`Config::max_response_size`]).
    pub fn max_response_size_bytes(&self) -> usize {
        self.protocol.max_response_size
    }

    /// The largest inbound message in bytes (see [`Config::max_message_size`]).
    pub fn max_message_size_bytes(&self) -> usize {
        self.max_message_size
    }

    /// The subprotocols enabled.
    pub fn enabled_subprotocols(&self) -> &[Subprotocol] {
        &self.subprotocols
    }

    /// The permessage-deflate settings, when it is on (see [`Config::deflate`]).
    #[cfg(feature = "deflate")]
    pub fn deflate_settings(&self) -> Option<&subscope_deflate::DeflateConfig> {
        self.deflate.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_bound_follows_the_message_and_response_limits() {
        let small = Config::default()
            .max_message_size(16 * 1024)
            .max_response_size(16 * 1024);
        // R = 16K + 6·128 + 64 (the largest frame: a 16 KiB result, a 128-byte id escaped).
        // 2K + 32K + 80K + (64K + 64K + 16K + R) + (128K + R)
        let r = 16 * 1024 + 6 * 128 + 64;
        assert_eq!(
            small.connection_buffer_bound(),
            2 * (2 * 1024 + 32 * 1024 + 80 * 1024 + (144 * 1024 + r) + (128 * 1024 + r))
        );
        // A longer id allowed: a larger frame to hold.
        assert!(
            small.clone().max_id_length(1024).connection_buffer_bound()
                > small.connection_buffer_bound()
        );
        let bigger = small.clone().max_message_size(64 * 1024);
        assert!(bigger.connection_buffer_bound() > small.connection_buffer_bound());
        let default = Config::default().connection_buffer_bound();
        assert!(
            default > 128 * 1024 * 1024 && default < 140 * 1024 * 1024,
            "{default}"
        );
    }
}
