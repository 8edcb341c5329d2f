//! The two GraphQL-over-WebSocket subprotocols and their negotiation.

/// A GraphQL-over-WebSocket subprotocol, named by its `Sec-WebSocket-Protocol` token.
///
/// Only the two WebSocket subprotocols: how a connection or an HTTP stream is carried as a
/// whole is a [`crate::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subprotocol {
    /// `graphql-transport-ws`: the current protocol (npm `graphql-ws` library).
    GraphqlTransportWs,
    /// `graphql-ws`: the legacy Apollo `subscriptions-transport-ws` protocol.
    GraphqlWs,
}

impl Subprotocol {
    /// Both subprotocols, modern first.
    pub const ALL: [Self; 2] = [Self::GraphqlTransportWs, Self::GraphqlWs];

    /// The `Sec-WebSocket-Protocol` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::GraphqlTransportWs => "graphql-transport-ws",
            Self::GraphqlWs => "graphql-ws",
        }
    }

    /// The subprotocol with exactly this token (case-sensitive), if any.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.token() == token)
    }
}

impl std::fmt::Display for Subprotocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

/// How a connection or an HTTP stream carries GraphQL: what [`crate::EndReason`]s and close
/// reasons are reported against, and what hooks see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket speaking this subprotocol.
    WebSocket(Subprotocol),
    /// graphql-sse, distinct connections mode: one operation per response stream.
    SseDistinct,
    /// graphql-sse, single connection mode: a reservation (`PUT`) and its one stream.
    SseSingle,
    /// Apollo's multipart HTTP subscriptions (or incremental delivery over `multipart/mixed`).
    Multipart,
    /// Plain GraphQL over HTTP: one request, one JSON response.
    GraphqlHttp,
}

impl Transport {
    /// A short stable name for logs and metrics labels: the subprotocol token for
    /// WebSockets, else `graphql-sse`, `graphql-sse-single`, `multipart`, `graphql-http`.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket(p) => p.token(),
            Self::SseDistinct => "graphql-sse",
            Self::SseSingle => "graphql-sse-single",
            Self::Multipart => "multipart",
            Self::GraphqlHttp => "graphql-http",
        }
    }

    /// The WebSocket subprotocol, if this is a WebSocket.
    pub fn subprotocol(self) -> Option<Subprotocol> {
        match self {
            Self::WebSocket(p) => Some(p),
            _ => None,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Subprotocol> for Transport {
    fn from(protocol: Subprotocol) -> Self {
        Self::WebSocket(protocol)
    }
}

/// Picks the subprotocol for a handshake: the first token the client offered (in its
/// order, across every `Sec-WebSocket-Protocol` header line) that is in `enabled`.
/// Matching is exact and case-sensitive; whitespace around commas is ignored.
///
/// ```
/// use subscope_protocol::{negotiate, Subprotocol};
/// let all = &Subprotocol::ALL;
/// assert_eq!(negotiate(["graphql-ws, graphql-transport-ws"], all), Some(Subprotocol::GraphqlWs));
/// assert_eq!(negotiate(["foo", " graphql-transport-ws "], all), Some(Subprotocol::GraphqlTransportWs));
/// assert_eq!(negotiate(["graphql-TransPort-ws"], all), None);
/// ```
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    enabled: &[Subprotocol],
) -> Option<Subprotocol> {
    header_values
        .into_iter()
        .flat_map(|line| line.split(','))
        .filter_map(|token| Subprotocol::from_token(token.trim()))
        .find(|p| enabled.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_merges_lines_and_keeps_client_order() {
        let all = &Subprotocol::ALL;
        assert_eq!(
            negotiate(["x", "graphql-ws", "graphql-transport-ws"], all),
            Some(Subprotocol::GraphqlWs)
        );
        assert_eq!(
            negotiate(
                ["graphql-ws,graphql-transport-ws"],
                &[Subprotocol::GraphqlTransportWs]
            ),
            Some(Subprotocol::GraphqlTransportWs)
        );
        assert_eq!(negotiate(["graphql-transport-wsgibberish"], all), None);
        assert_eq!(negotiate(std::iter::empty(), all), None);
    }

    #[test]
    fn transports_name_themselves() {
        assert_eq!(
            Transport::WebSocket(Subprotocol::GraphqlWs).to_string(),
            "graphql-ws"
        );
        assert_eq!(Transport::SseSingle.subprotocol(), None);
        assert_eq!(Transport::GraphqlHttp.name(), "graphql-http");
    }
}
