//! Live and total counts of connections, HTTP streams and operations (by kind), readable
//! at any time. The vocabulary is the README's "Gauges" table.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::CloseKind;

/// The kind of an operation, once its document was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// Shared counters of one server (or of several, if you hand the same `Arc` to each).
///
/// Updates are relaxed atomics: each counter is exact, a snapshot is not a single instant
/// across counters.
#[derive(Debug, Default)]
pub struct Gauges {
    connections: AtomicU64,
    operations: AtomicU64,
    subscriptions: AtomicU64,
    connections_total: AtomicU64,
    operations_total: AtomicU64,
    subscriptions_total: AtomicU64,
    queries_total: AtomicU64,
    mutations_total: AtomicU64,
    leaked_operations: AtomicU64,
    hook_panics: AtomicU64,
    responses_too_large: AtomicU64,
    events_dropped: AtomicU64,
    subscriptions_lagged: AtomicU64,
    broker_gaps: AtomicU64,
    resume_gaps: AtomicU64,
    renewals: AtomicU64,
    revocations: AtomicU64,
    http_streams_expired: AtomicU64,
    events_replayed: AtomicU64,
    origins_refused: AtomicU64,
    document_cache_hits: AtomicU64,
    document_cache_misses: AtomicU64,
    tls_handshake_failures: AtomicU64,
    http2_connections_stalled: AtomicU64,
    shared_upstreams: AtomicU64,
    shared_subscriptions: AtomicU64,
    http_streams: AtomicU64,
    http_streams_total: AtomicU64,
    http_requests_total: AtomicU64,
    http_refused: AtomicU64,
    deflate_connections: AtomicU64,
    deflate_streams: AtomicU64,
    deflate_payload_bytes: AtomicU64,
    deflate_wire_bytes: AtomicU64,
    closes: [AtomicU64; CloseKind::ALL.len()],
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GaugeSnapshot {
    /// WebSocket connections alive now (upgraded and not yet finished). HTTP requests and
    /// streams are `http_requests_total` and `http_streams`.
    pub connections: u64,
    /// Operations alive now, of every kind and transport (preparing or streaming, not yet
    /// dropped).
    pub operations: u64,
    /// Subscription operations alive now (counted once `on_subscribe` let them through
    /// and their document named a subscription).
    pub subscriptions: u64,
    /// WebSocket connections ever upgraded.
    pub connections_total: u64,
    /// Operations ever accepted (id reserved), of every kind and transport.
    pub operations_total: u64,
    /// Subscription operations ever executed.
    pub subscriptions_total: u64,
    /// Query operations ever executed.
    pub queries_total: u64,
    /// Mutation operations ever executed.
    pub mutations_total: u64,
    /// Operations whose state outlived their stream (leak detection on; see
    /// [`crate::Config::detect_leaks`]).
    pub leaked_operations: u64,
    /// Panics caught in `on_complete`, `on_disconnect` or `on_close` (each was logged).
    pub hook_panics: u64,
    /// Operations ended because a response exceeded `max_response_size`.
    pub responses_too_large: u64,
    /// Topic events a subscriber did not receive (its buffer was full; see
    /// [`crate::topics::Overflow`]).
    pub events_dropped: u64,
    /// Subscriptions ended because their buffer overflowed (`Overflow::End`).
    pub subscriptions_lagged: u64,
    /// Subscribers told of a broker gap (events lost while the broker was unreachable).
    pub broker_gaps: u64,
    /// Resumed subscribers told `RESUME_GAP` (history did not reach back to their id).
    pub resume_gaps: u64,
    /// Retained events handed to resumed subscribers.
    pub events_replayed: u64,
    /// Authorizations renewed by a `ping` ([`crate::Hooks::on_renew`]).
    pub renewals: u64,
    /// Connections and HTTP streams ended by [`crate::Server::revoke`].
    pub revocations: u64,
    /// HTTP streams ended because their authorization expired (WebSocket connections that
    /// expired are counted by `closes_of(CloseKind::Expired)`).
    pub http_streams_expired: u64,
    /// Upgrades refused with HTTP 403 because their `Origin` is not allowed
    /// ([`crate::Config::allowed_origins`]).
    pub origins_refused: u64,
    /// Requests whose document came parsed from the cache ([`crate::Config::document_cache`]).
    pub document_cache_hits: u64,
    /// Requests whose document was parsed (a hit rate is hits / (hits + misses)).
    pub document_cache_misses: u64,
    /// TLS handshakes that failed (not TLS, no shared protocol, reset mid-handshake);
    /// a handshake that timed out is not counted here.
    pub tls_handshake_failures: u64,
    /// HTTP/2 connections cut because a stream's flow-control window stayed shut past
    /// the write timeout (the client never read).
    pub http2_connections_stalled: u64,
    /// Shared executions alive now (see [`crate::ShareKey`]): one per distinct key in use.
    pub shared_upstreams: u64,
    /// Operations alive now that are subscribers of a shared execution (also counted in
    /// `subscriptions`).
    pub shared_subscriptions: u64,
    /// HTTP event streams alive now: SSE and multipart responses, and single-connection
    /// reservations not yet opened.
    pub http_streams: u64,
    /// HTTP event streams ever opened (reservations included).
    pub http_streams_total: u64,
    /// GraphQL HTTP requests ever received (every transport but WebSocket).
    pub http_requests_total: u64,
    /// HTTP requests answered with a 4xx or 5xx status before any GraphQL work (malformed,
    /// too large, unknown token, limit reached, ...).
    pub http_refused: u64,
    /// WebSocket connections that agreed on permessage-deflate.
    pub deflate_connections_total: u64,
    /// zlib streams connections hold now: with `Context::Stream`, one per connection that
    /// has sent an event within a keepalive interval; one per connection whose client
    /// keeps its context. 0 at the default settings, which share one stream per thread.
    pub deflate_streams: u64,
    /// Bytes of outbound message payload compressed with permessage-deflate...
    pub deflate_payload_bytes_total: u64,
    /// ...and what they took on the wire, compressed (frame headers not counted).
    pub deflate_wire_bytes_total: u64,
    /// Finished connections per [`CloseKind`] (read with [`GaugeSnapshot::closes_of`]);
    /// private, so a new kind does not change a public type.
    closes: [u64; CloseKind::ALL.len()],
}

impl GaugeSnapshot {
    /// The snapshot in the Prometheus text exposition format (metric names prefixed
    /// `subscope_`).
    ///
    /// ```
    /// let text = subscope_core::Gauges::new().snapshot().to_prometheus();
    /// assert!(text.contains("subscope_connections 0"));
    /// assert!(text.contains(r#"subscope_closes_total{kind="peer_gone"} 0"#));
    /// ```
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP subscope_{name} {help}\n# TYPE subscope_{name} {kind}\nsubscope_{name} {value}\n"
            );
        };
        metric(
            "connections",
            "gauge",
            "WebSocket connections alive now.",
            self.connections,
        );
        metric(
            "operations",
            "gauge",
            "Operations alive now, every kind and transport.",
            self.operations,
        );
        metric(
            "subscriptions",
            "gauge",
            "Subscription operations alive now.",
            self.subscriptions,
        );
        metric(
            "connections_total",
            "counter",
            "WebSocket connections ever upgraded.",
            self.connections_total,
        );
        metric(
            "operations_total",
            "counter",
            "Operations ever accepted, every kind and transport.",
            self.operations_total,
        );
        metric(
            "subscriptions_total",
            "counter",
            "Subscription operations ever executed.",
            self.subscriptions_total,
        );
        metric(
            "queries_total",
            "counter",
            "Query operations ever executed.",
            self.queries_total,
        );
        metric(
            "mutations_total",
            "counter",
            "Mutation operations ever executed.",
            self.mutations_total,
        );
        metric(
            "leaked_operations_total",
            "counter",
            "Operations whose state outlived their stream (leak detection on).",
            self.leaked_operations,
        );
        metric(
            "hook_panics_total",
            "counter",
            "Panics caught in on_complete, on_disconnect or on_close.",
            self.hook_panics,
        );
        metric(
            "responses_too_large_total",
            "counter",
            "Operations ended because a response exceeded max_response_size.",
            self.responses_too_large,
        );
        metric(
            "events_dropped_total",
            "counter",
            "Topic events a slow subscriber did not receive.",
            self.events_dropped,
        );
        metric(
            "subscriptions_lagged_total",
            "counter",
            "Subscriptions ended because their buffer overflowed.",
            self.subscriptions_lagged,
        );
        metric(
            "broker_gaps_total",
            "counter",
            "Subscribers told of a broker gap.",
            self.broker_gaps,
        );
        metric(
            "resume_gaps_total",
            "counter",
            "Resumed subscribers told that history did not reach back to their id.",
            self.resume_gaps,
        );
        metric(
            "renewals_total",
            "counter",
            "Authorizations renewed by a ping.",
            self.renewals,
        );
        metric(
            "revocations_total",
            "counter",
            "Connections and HTTP streams ended by a revocation.",
            self.revocations,
        );
        metric(
            "http_streams_expired_total",
            "counter",
            "HTTP streams ended because their authorization expired.",
            self.http_streams_expired,
        );
        metric(
            "events_replayed_total",
            "counter",
            "Retained events handed to resumed subscribers.",
            self.events_replayed,
        );
        metric(
            "origins_refused_total",
            "counter",
            "Upgrades refused because their Origin is not allowed.",
            self.origins_refused,
        );
        metric(
            "document_cache_hits_total",
            "counter",
            "Requests whose parsed document came from the cache.",
            self.document_cache_hits,
        );
        metric(
            "document_cache_misses_total",
            "counter",
            "Requests whose document was parsed.",
            self.document_cache_misses,
        );
        metric(
            "tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed.",
            self.tls_handshake_failures,
        );
        metric(
            "http2_connections_stalled_total",
            "counter",
            "HTTP/2 connections cut because a stream's window stayed shut past the write timeout.",
            self.http2_connections_stalled,
        );
        metric(
            "shared_upstreams",
            "gauge",
            "Shared executions alive now.",
            self.shared_upstreams,
        );
        metric(
            "shared_subscriptions",
            "gauge",
            "Operations alive now that subscribe to a shared execution.",
            self.shared_subscriptions,
        );
        metric(
            "http_streams",
            "gauge",
            "HTTP event streams (SSE, multipart, reservations) alive now.",
            self.http_streams,
        );
        metric(
            "http_streams_total",
            "counter",
            "HTTP event streams ever opened.",
            self.http_streams_total,
        );
        metric(
            "http_requests_total",
            "counter",
            "GraphQL HTTP requests ever received.",
            self.http_requests_total,
        );
        metric(
            "http_refused_total",
            "counter",
            "HTTP requests refused with a 4xx or 5xx status before any GraphQL work.",
            self.http_refused,
        );
        metric(
            "deflate_connections_total",
            "counter",
            "WebSocket connections that agreed on permessage-deflate.",
            self.deflate_connections_total,
        );
        metric(
            "deflate_streams",
            "gauge",
            "zlib streams held by connections now.",
            self.deflate_streams,
        );
        metric(
            "deflate_payload_bytes_total",
            "counter",
            "Outbound message bytes compressed with permessage-deflate.",
            self.deflate_payload_bytes_total,
        );
        metric(
            "deflate_wire_bytes_total",
            "counter",
            "What those bytes took on the wire, compressed.",
            self.deflate_wire_bytes_total,
        );
        out.push_str("# HELP subscope_closes_total Finished connections by kind of ending.\n");
        out.push_str("# TYPE subscope_closes_total counter\n");
        for &kind in CloseKind::ALL {
            let _ = writeln!(
                out,
                "subscope_closes_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                self.closes_of(kind)
            );
        }
        out
    }

    /// Finished connections of one kind.
    pub fn closes_of(&self, kind: CloseKind) -> u64 {
        self.closes[kind.index()]
    }
}

impl Gauges {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> GaugeSnapshot {
        let mut closes = [0; CloseKind::ALL.len()];
        for (slot, counter) in closes.iter_mut().zip(&self.closes) {
            *slot = counter.load(Ordering::Relaxed);
        }
        GaugeSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            operations: self.operations.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            operations_total: self.operations_total.load(Ordering::Relaxed),
            subscriptions_total: self.subscriptions_total.load(Ordering::Relaxed),
            queries_total: self.queries_total.load(Ordering::Relaxed),
            mutations_total: self.mutations_total.load(Ordering::Relaxed),
            leaked_operations: self.leaked_operations.load(Ordering::Relaxed),
            hook_panics: self.hook_panics.load(Ordering::Relaxed),
            responses_too_large: self.responses_too_large.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            subscriptions_lagged: self.subscriptions_lagged.load(Ordering::Relaxed),
            broker_gaps: self.broker_gaps.load(Ordering::Relaxed),
            resume_gaps: self.resume_gaps.load(Ordering::Relaxed),
            events_replayed: self.events_replayed.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
            revocations: self.revocations.load(Ordering::Relaxed),
            http_streams_expired: self.http_streams_expired.load(Ordering::Relaxed),
            origins_refused: self.origins_refused.load(Ordering::Relaxed),
            document_cache_hits: self.document_cache_hits.load(Ordering::Relaxed),
            document_cache_misses: self.document_cache_misses.load(Ordering::Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed),
            http2_connections_stalled: self.http2_connections_stalled.load(Ordering::Relaxed),
            shared_upstreams: self.shared_upstreams.load(Ordering::Relaxed),
            shared_subscriptions: self.shared_subscriptions.load(Ordering::Relaxed),
            http_streams: self.http_streams.load(Ordering::Relaxed),
            http_streams_total: self.http_streams_total.load(Ordering::Relaxed),
            http_requests_total: self.http_requests_total.load(Ordering::Relaxed),
            http_refused: self.http_refused.load(Ordering::Relaxed),
            deflate_connections_total: self.deflate_connections.load(Ordering::Relaxed),
            deflate_streams: self.deflate_streams.load(Ordering::Relaxed),
            deflate_payload_bytes_total: self.deflate_payload_bytes.load(Ordering::Relaxed),
            deflate_wire_bytes_total: self.deflate_wire_bytes.load(Ordering::Relaxed),
            closes,
        }
    }

    /// Live connections now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Live operations now, every kind.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Live subscription operations now.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Counts a new connection unless `limit` is reached; returns whether it was counted.
    pub(crate) fn try_open_connection(&self, limit: Option<usize>) -> bool {
        let previous = self.connections.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|max| previous >= max as u64) {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    #[cfg(feature = "http")]
    /// Counts a new HTTP event stream unless `limit` is reached.
    pub(crate) fn try_open_http_stream(&self, limit: Option<usize>) -> bool {
        let previous = self.http_streams.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|max| previous >= max as u64) {
            self.http_streams.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.http_streams_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    #[cfg(feature = "http")]
    pub(crate) fn close_http_stream(&self) {
        self.http_streams.fetch_sub(1, Ordering::Relaxed);
    }

    #[cfg(feature = "http")]
    pub(crate) fn count_http_request(&self) {
        self.http_requests_total.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "http")]
    pub(crate) fn count_http_refused(&self) {
        self.http_refused.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "deflate")]
    pub(crate) fn count_deflate_connection(&self) {
        self.deflate_connections.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "deflate")]
    pub(crate) fn open_deflate_stream(&self) {
        self.deflate_streams.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "deflate")]
    pub(crate) fn close_deflate_stream(&self) {
        self.deflate_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// One compressed outbound message (or fragment): `payload` bytes became `wire`.
    #[cfg(feature = "deflate")]
    pub(crate) fn count_deflated(&self, payload: usize, wire: usize) {
        self.deflate_payload_bytes
            .fetch_add(payload as u64, Ordering::Relaxed);
        self.deflate_wire_bytes
            .fetch_add(wire as u64, Ordering::Relaxed);
    }

    pub(crate) fn close_connection(&self, kind: CloseKind) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        self.count_close(kind);
    }

    pub(crate) fn count_close(&self, kind: CloseKind) {
        self.closes[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn open_operation(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
        self.operations_total.fetch_add(1, Ordering::Relaxed);
    }

    /// An operation's kind became known (it is about to execute); a subscription stays
    /// counted live until [`Gauges::close_subscription`].
    pub(crate) fn count_kind(&self, kind: OperationKind) {
        match kind {
            OperationKind::Query => self.queries_total.fetch_add(1, Ordering::Relaxed),
            OperationKind::Mutation => self.mutations_total.fetch_add(1, Ordering::Relaxed),
            OperationKind::Subscription => {
                self.subscriptions.fetch_add(1, Ordering::Relaxed);
                self.subscriptions_total.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub(crate) fn count_leak(&self) {
        self.leaked_operations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_hook_panic(&self) {
        self.hook_panics.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_too_large(&self) {
        self.responses_too_large.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_lagged(&self) {
        self.subscriptions_lagged.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_gap(&self) {
        self.broker_gaps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_renewal(&self) {
        self.renewals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_revoked(&self, ended: usize) {
        self.revocations.fetch_add(ended as u64, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn count_http_expired(&self) {
        self.http_streams_expired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_resume_gap(&self) {
        self.resume_gaps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_replayed(&self, events: usize) {
        self.events_replayed
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn count_tls_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "http")]
    pub(crate) fn count_h2_stalled(&self) {
        self.http2_connections_stalled
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_document(&self, hit: bool) {
        let counter = if hit {
            &self.document_cache_hits
        } else {
            &self.document_cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_origin_refused(&self) {
        self.origins_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn open_upstream(&self) {
        self.shared_upstreams.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn close_upstream(&self) {
        self.shared_upstreams.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn open_shared_subscriber(&self) {
        self.shared_subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn close_shared_subscriber(&self) {
        self.shared_subscriptions.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn close_operation(&self) {
        self.operations.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn close_subscription(&self) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Compressed sockets report into the server's gauges.
#[cfg(feature = "deflate")]
impl subscope_deflate::Stats for Gauges {
    fn connection(&self) {
        self.count_deflate_connection();
    }

    fn stream_opened(&self) {
        self.open_deflate_stream();
    }

    fn stream_closed(&self) {
        self.close_deflate_stream();
    }

    fn compressed(&self, payload: usize, wire: usize) {
        self.count_deflated(payload, wire);
    }
}
