//! What makes two operations share one execution: a leaf, so the hooks that compute keys
//! and the sharing engine that uses them do not import each other.

use async_graphql::Request;

/// What makes two operations identical enough to share one execution.
///
/// Built from the request ([`ShareKey::of`]: document, operation name, variables) plus
/// whatever of the connection's context the resolvers read ([`ShareKey::with`]: a tenant, a
/// role). Two operations share only when their keys are equal, so the key must contain
/// everything that could make their results differ: the shared execution runs with the
/// session data of the operation that started it.
///
/// ```
/// use async_graphql::Request;
/// use subscope_core::ShareKey;
/// let a = ShareKey::of(&Request::new("subscription { ticks }")).with("tenant-a");
/// let b = ShareKey::of(&Request::new("subscription { ticks }")).with("tenant-b");
/// assert_ne!(a, b);
/// assert_eq!(a, ShareKey::of(&Request::new("subscription { ticks }")).with("tenant-a"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey(String);

impl ShareKey {
    /// The request's document, operation name and variables (extensions are not part of
    /// it). Variables are compared as sent, so `{a,b}` and `{b,a}` do not share.
    pub fn of(request: &Request) -> Self {
        let variables = serde_json::to_string(&request.variables).unwrap_or_default();
        let name = request.operation_name.as_deref().unwrap_or("");
        let mut key = String::with_capacity(request.query.len() + variables.len() + 32);
        for part in [request.query.as_str(), name, variables.as_str()] {
            push_part(&mut key, part);
        }
        Self(key)
    }

    /// The key with one more part of context (a tenant, a role, a user id).
    #[must_use]
    pub fn with(mut self, part: impl AsRef<str>) -> Self {
        push_part(&mut self.0, part.as_ref());
        self
    }
}

/// Length-prefixed, so no two different part lists make the same key.
fn push_part(key: &mut String, part: &str) {
    key.push_str(&part.len().to_string());
    key.push(':');
    key.push_str(part);
}
