//! Why a connection or an operation ended: typed close reasons and the close frame each
//! maps to, and the end reasons of operations.
//!
//! Every code and reason text of `docs/PROTOCOL.md` section 4 lives here and only here,
//! so the wire answer is a pure function of the reason.

use std::borrow::Cow;

/// Close codes subscope sends or reports (RFC 6455 and the 4xxx application range).
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (graceful shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (legacy subprotocol: binary frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// No close frame was exchanged: what a peer observes after an abrupt end.
    pub const ABNORMAL: u16 = 1006;
    /// Policy violation: the inbound rate limit was exceeded.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// The message was larger than the configured limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Internal error (legacy subprotocol: init rejected).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Overloaded: the connection limit was reached. Retryable.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Invalid message received.
    pub const BAD_REQUEST: u16 = 4400;
    /// `subscribe`/`start` before the connection was acknowledged.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The `on_connect` hook rejected the connection.
    pub const FORBIDDEN: u16 = 4403;
    /// No acceptable subprotocol was offered.
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    /// No `connection_init` within the init timeout.
    pub const CONNECTION_INIT_TIMEOUT: u16 = 4408;
    /// A `subscribe` reused the id of a live operation.
    pub const SUBSCRIBER_ALREADY_EXISTS: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INIT_REQUESTS: u16 = 4429;
    /// The server failed unexpectedly (for example a panicking `on_connect` hook).
    pub const INTERNAL_SERVER_ERROR: u16 = 4500;
}

/// The longest close reason RFC 6455 allows (a control frame carries at most 125 bytes,
/// two of which are the code).
pub const MAX_REASON_BYTES: usize = 123;

/// Cuts `reason` to at most [`MAX_REASON_BYTES`] bytes without splitting a UTF-8 character.
///
/// ```
/// let long = "é".repeat(100); // 200 bytes
/// let cut = subscope_protocol::truncate_reason(&long);
/// assert_eq!(cut.len(), 122);
/// assert!(long.starts_with(cut));
/// ```
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Why a connection ended, named for what happened.
///
/// [`CloseReason::code`] and [`CloseReason::reason`] give the close frame subscope sends
/// (or, for endings without a close frame, what the peer observes and what hooks see).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent a close frame with this code and reason.
    ClientClosed {
        /// The client's code (1005 when its frame had none).
        code: u16,
        /// The client's reason text.
        reason: String,
    },
    /// The socket ended without a close frame (EOF, reset, read or write error).
    PeerGone,
    /// Legacy `connection_terminate`: close 1000.
    Terminated,
    /// Graceful server shutdown: close 1001 `Going away`.
    ServerShutdown,
    /// No acceptable subprotocol: close 4406.
    SubprotocolNotAcceptable,
    /// The connection limit was reached: close 1013 `Try again later`.
    ConnectionLimit,
    /// No `connection_init` within the init timeout: close 4408.
    InitTimeout,
    /// `on_connect` rejected the connection, or a renewal was refused: close 4403
    /// (legacy, at `connection_init`: 1011 after `connection_error`).
    Forbidden,
    /// The authorization `on_connect` granted expired: close 4403 `Token expired`.
    TokenExpired,
    /// The application revoked the connection's authorization: close 4403 `Forbidden`.
    Revoked,
    /// `on_connect` failed or panicked: close 4500 (legacy: 1011 after `connection_error`).
    InternalError,
    /// Legacy subprotocol: `on_connect` rejected the connection; `connection_error` was
    /// sent, then close 1011.
    LegacyInitRejected,
    /// Legacy subprotocol: `on_connect` failed or panicked; `connection_error` was sent,
    /// then close 1011.
    LegacyInitFailed,
    /// A second `connection_init`: close 4429.
    TooManyInitRequests,
    /// `subscribe`/`start` before the ack: close 4401.
    SubscribeBeforeAck,
    /// `subscribe` reused the id of a live operation: close 4409.
    DuplicateOperationId(String),
    /// An invalid message (on `graphql-transport-ws`; on either subprotocol for invalid
    /// UTF-8): close 4400 `Invalid message received`. The kind says what was wrong.
    InvalidMessage(crate::InvalidMessage),
    /// A binary frame on the legacy subprotocol: close 1002.
    BinaryFrame,
    /// An inbound message above `max_message_size`: close 1009 `Message too big`.
    MessageTooBig,
    /// More inbound messages than `inbound_rate` allows: close 1008 `Rate limit exceeded`.
    RateLimited,
    /// No sign of life within the keepalive timeout after a ping: socket dropped, no close frame.
    KeepaliveTimeout,
    /// A write could not complete within the write timeout: socket dropped, no close frame.
    WriteTimeout,
    /// The connection future was dropped before it finished (server abort, runtime shutdown,
    /// an outer `select!`). Reported to hooks only.
    Dropped,
    /// HTTP transports: the response ended because its operations finished (a distinct
    /// SSE stream or a multipart response after its last result, a plain request after its
    /// result). Code 1000; only HTTP streams end this way (see [`crate::Transport`]).
    Finished,
}

impl CloseReason {
    /// The close code sent (or, for endings without a close frame, 1006).
    pub fn code(&self) -> u16 {
        match self {
            Self::ClientClosed { code: c, .. } => *c,
            Self::PeerGone | Self::KeepaliveTimeout | Self::WriteTimeout | Self::Dropped => {
                code::ABNORMAL
            }
            Self::Terminated | Self::Finished => code::NORMAL,
            Self::ServerShutdown => code::GOING_AWAY,
            Self::SubprotocolNotAcceptable => code::SUBPROTOCOL_NOT_ACCEPTABLE,
            Self::ConnectionLimit => code::TRY_AGAIN_LATER,
            Self::InitTimeout => code::CONNECTION_INIT_TIMEOUT,
            Self::Forbidden | Self::TokenExpired | Self::Revoked => code::FORBIDDEN,
            Self::InternalError => code::INTERNAL_SERVER_ERROR,
            Self::LegacyInitRejected | Self::LegacyInitFailed => code::INTERNAL_ERROR,
            Self::TooManyInitRequests => code::TOO_MANY_INIT_REQUESTS,
            Self::SubscribeBeforeAck => code::UNAUTHORIZED,
            Self::DuplicateOperationId(_) => code::SUBSCRIBER_ALREADY_EXISTS,
            Self::InvalidMessage(_) => code::BAD_REQUEST,
            Self::BinaryFrame => code::PROTOCOL_ERROR,
            Self::MessageTooBig => code::MESSAGE_TOO_BIG,
            Self::RateLimited => code::POLICY_VIOLATION,
        }
    }

    /// The close reason text, at most [`MAX_REASON_BYTES`] bytes.
    pub fn reason(&self) -> Cow<'_, str> {
        let text: Cow<'_, str> = match self {
            Self::ClientClosed { reason, .. } => Cow::Borrowed(reason.as_str()),
            Self::PeerGone => Cow::Borrowed("Connection lost"),
            Self::Terminated | Self::Finished => Cow::Borrowed(""),
            Self::ServerShutdown => Cow::Borrowed("Going away"),
            Self::SubprotocolNotAcceptable => Cow::Borrowed("Subprotocol not acceptable"),
            Self::ConnectionLimit => Cow::Borrowed("Try again later"),
            Self::InitTimeout => Cow::Borrowed("Connection initialisation timeout"),
            Self::Forbidden | Self::Revoked => Cow::Borrowed("Forbidden"),
            Self::TokenExpired => Cow::Borrowed("Token expired"),
            Self::InternalError | Self::LegacyInitFailed => Cow::Borrowed("Internal server error"),
            Self::LegacyInitRejected => Cow::Borrowed("Forbidden"),
            Self::TooManyInitRequests => Cow::Borrowed("Too many initialisation requests"),
            Self::SubscribeBeforeAck => Cow::Borrowed("Unauthorized"),
            Self::DuplicateOperationId(id) => {
                Cow::Owned(format!("Subscriber for {id} already exists"))
            }
            // The reference implementation's text, whatever the kind.
            Self::InvalidMessage(_) => Cow::Borrowed("Invalid message received"),
            Self::BinaryFrame => Cow::Borrowed("WebSocket message type must be text"),
            Self::MessageTooBig => Cow::Borrowed("Message too big"),
            Self::RateLimited => Cow::Borrowed("Rate limit exceeded"),
            Self::KeepaliveTimeout => Cow::Borrowed("Keepalive timeout"),
            Self::WriteTimeout => Cow::Borrowed("Write timeout"),
            Self::Dropped => Cow::Borrowed("Connection dropped"),
        };
        match text {
            Cow::Borrowed(s) => Cow::Borrowed(truncate_reason(s)),
            Cow::Owned(s) => Cow::Owned(truncate_reason(&s).to_owned()),
        }
    }

    /// Whether a close frame goes out for this ending: false when the socket is dropped
    /// without one; true for [`CloseReason::ClientClosed`], whose close frame is echoed
    /// (RFC 6455 5.5.1), and for every ending the server decides.
    pub fn sends_close_frame(&self) -> bool {
        !matches!(
            self,
            Self::PeerGone | Self::KeepaliveTimeout | Self::WriteTimeout | Self::Dropped
        )
    }

    /// The coarse kind of this ending, used as the key of the close counters.
    pub fn kind(&self) -> CloseKind {
        match self {
            Self::ClientClosed { .. } | Self::Terminated | Self::Finished => CloseKind::Client,
            Self::PeerGone => CloseKind::PeerGone,
            Self::ServerShutdown => CloseKind::Shutdown,
            Self::SubprotocolNotAcceptable | Self::ConnectionLimit => CloseKind::Refused,
            Self::InitTimeout | Self::KeepaliveTimeout | Self::WriteTimeout => CloseKind::Timeout,
            Self::Forbidden | Self::LegacyInitRejected => CloseKind::Forbidden,
            Self::TokenExpired => CloseKind::Expired,
            Self::Revoked => CloseKind::Revoked,
            Self::InternalError | Self::LegacyInitFailed => CloseKind::Internal,
            Self::TooManyInitRequests
            | Self::SubscribeBeforeAck
            | Self::DuplicateOperationId(_)
            | Self::InvalidMessage(_)
            | Self::BinaryFrame
            | Self::MessageTooBig
            | Self::RateLimited => CloseKind::ProtocolViolation,
            Self::Dropped => CloseKind::Dropped,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

/// Coarse groups of [`CloseReason`], counted by the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseKind {
    /// The client closed (close frame or `connection_terminate`).
    Client,
    /// The socket ended without a close frame.
    PeerGone,
    /// Server shutdown.
    Shutdown,
    /// Refused at the door (subprotocol or connection limit).
    Refused,
    /// Init, keepalive or write timeout.
    Timeout,
    /// `on_connect` rejected the connection (or a renewal was refused).
    Forbidden,
    /// The connection's authorization expired.
    Expired,
    /// The application revoked the connection's authorization.
    Revoked,
    /// Internal error.
    Internal,
    /// The peer broke a protocol rule.
    ProtocolViolation,
    /// The connection future was dropped from outside.
    Dropped,
}

impl CloseKind {
    /// Every kind, in a fixed order (the order of the Prometheus `closes_total` lines).
    pub const ALL: &'static [Self] = &[
        Self::Client,
        Self::PeerGone,
        Self::Shutdown,
        Self::Refused,
        Self::Timeout,
        Self::Forbidden,
        Self::Expired,
        Self::Revoked,
        Self::Internal,
        Self::ProtocolViolation,
        Self::Dropped,
    ];

    /// A stable snake_case label (for metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::PeerGone => "peer_gone",
            Self::Shutdown => "shutdown",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Forbidden => "forbidden",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Internal => "internal",
            Self::ProtocolViolation => "protocol_violation",
            Self::Dropped => "dropped",
        }
    }

    /// This kind's position in [`CloseKind::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Why an operation ended, as the server's `on_complete` hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The stream ended by itself (`complete` was sent).
    Completed,
    /// The client sent `complete` (modern) or `stop` (legacy), or DELETEd it (graphql-sse).
    ClientStopped,
    /// The request failed before execution (syntax, validation, unknown operation).
    RequestError,
    /// `on_subscribe` refused it.
    Refused,
    /// The stream panicked; the connection and its other operations continue.
    Panicked,
    /// A result was larger than [`crate::Settings::max_response_size`]: the operation
    /// ended with `error` `[{"message":"Response too large"}]`; the connection goes on.
    ResponseTooLarge,
    /// Legacy only: a `start` reused its id, so it was stopped for the new one.
    Replaced,
    /// The connection (or HTTP stream) ended while the operation was live.
    ConnectionClosed(CloseReason),
    /// The connection future was dropped from outside while the operation was live.
    Dropped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_id_reason_is_cut_on_a_char_boundary() {
        let id = "ü".repeat(200);
        let reason = CloseReason::DuplicateOperationId(id).reason().into_owned();
        assert!(reason.len() <= MAX_REASON_BYTES);
        assert!(reason.starts_with("Subscriber for üü"));
    }

    #[test]
    fn codes_follow_the_spec() {
        assert_eq!(CloseReason::InitTimeout.code(), 4408);
        assert_eq!(CloseReason::SubscribeBeforeAck.code(), 4401);
        assert_eq!(CloseReason::TooManyInitRequests.code(), 4429);
        assert_eq!(CloseReason::MessageTooBig.code(), 1009);
        assert_eq!(CloseReason::ServerShutdown.reason(), "Going away");
        assert_eq!(
            CloseReason::DuplicateOperationId("a".into()).reason(),
            "Subscriber for a already exists"
        );
    }
}
