//! An example `on_connect`: checks a token from the `connection_init` payload and hands
//! the user to resolvers.
//!
//! The payload may carry the token as `{"token": "..."}` or as
//! `{"Authorization": "Bearer ..."}` (what many clients put in `connectionParams`); a
//! native client may instead send an `Authorization: Bearer ...` header on the upgrade
//! request, and a browser's `EventSource` the `access_token` query parameter (RFC 6750).
//! [`TokenAuth::authenticate`] is the one check, shared with the HTTP side of the
//! axum example.
//! Resolvers read the user with `ctx.data::<User>()`; there is no way to reach a resolver
//! without passing this hook, on either subprotocol: an operation before the ack closes
//! the socket 4401.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::Value;
use subscope::{Accept, ConnectionInfo, Hooks, Reject, Renewal};

/// The authenticated user, in every resolver's context data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

/// The token a connection was authorized with, in its session data (what a revocation
/// matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthToken(pub String);

/// Ends the live sessions authorized by a token; returns how many (see
/// [`TokenAuth::set_revoker`]).
type Revoker = Box<dyn Fn(&str) -> usize + Send + Sync>;

/// Accepts connections whose init payload carries a known token.
#[derive(Clone, Default)]
pub struct TokenAuth {
    users: Arc<HashMap<String, String>>,
    open: bool,
    /// How long an authorization lasts (`None`: as long as the connection).
    ttl: Option<Duration>,
    revoked: Arc<Mutex<HashSet<String>>>,
    revoker: Arc<OnceLock<Revoker>>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("open", &self.open)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenAuth {
    /// Accepts every connection (as user `anonymous`), token or not.
    pub fn open() -> Self {
        Self {
            open: true,
            ..Self::default()
        }
    }

    /// Accepts each `(token, user)` pair.
    pub fn new<I, T, U>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (T, U)>,
        T: Into<String>,
        U: Into<String>,
    {
        Self {
            users: Arc::new(
                pairs
                    .into_iter()
                    .map(|(t, u)| (t.into(), u.into()))
                    .collect(),
            ),
            ..Self::default()
        }
    }

    /// Authorizations last `ttl` from when they are granted (or renewed by a `ping` that
    /// carries a valid `{"token": ...}`).
    #[must_use]
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// How the server ends a token's sessions (`Server::revoke`); set once it is built.
    pub fn set_revoker(&self, revoker: impl Fn(&str) -> usize + Send + Sync + 'static) {
        let _ = self.revoker.set(Box::new(revoker));
    }

    /// Makes `token` invalid from now on and ends every session it authorized; returns how
    /// many ended (`None` when no revoker is set).
    pub fn revoke(&self, token: &str) -> Option<usize> {
        self.revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_owned());
        self.revoker.get().map(|revoke| revoke(token))
    }

    fn is_revoked(&self, token: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(token)
    }

    fn token(payload: &Value) -> Option<&str> {
        payload.get("token").and_then(Value::as_str).or_else(|| {
            payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(Value::as_str)
                .and_then(|h| h.strip_prefix("Bearer "))
        })
    }
}

impl TokenAuth {
    /// The user a token belongs to (`anonymous` for an open server), or `None`.
    pub fn authenticate(&self, token: Option<&str>) -> Option<User> {
        if self.open {
            return Some(User("anonymous".into()));
        }
        token
            .filter(|t| !self.is_revoked(t))
            .and_then(|t| self.users.get(t))
            .map(|user| User(user.clone()))
    }

    /// The token of RFC 6750's `access_token` query parameter: the one way a browser's
    /// `EventSource` can send one (it cannot set headers).
    pub fn access_token(uri: &subscope::http::Uri) -> Option<String> {
        uri.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "access_token")
            .map(|(_, v)| v.to_owned())
    }

    /// The token of an `Authorization: Bearer ...` header, if any.
    pub fn bearer(headers: &subscope::http::HeaderMap) -> Option<&str> {
        headers
            .get(subscope::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
    }
}

impl Hooks for TokenAuth {
    async fn on_connect(
        &self,
        conn: &ConnectionInfo,
        payload: Option<Value>,
    ) -> Result<Accept, Reject> {
        // The init payload first; else the upgrade request's header.
        let token = payload
            .as_ref()
            .and_then(Self::token)
            .or_else(|| Self::bearer(&conn.headers));
        let query_token = Self::access_token(&conn.uri);
        let token = token.or(query_token.as_deref());
        match self.authenticate(token) {
            Some(user) => {
                tracing::debug!(conn = conn.id, user = %user.0, "authenticated");
                let mut accept = Accept::new()
                    .data(user)
                    .data(AuthToken(token.unwrap_or_default().to_owned()));
                if let Some(ttl) = self.ttl {
                    accept = accept.valid_for(ttl);
                }
                Ok(accept)
            }
            // No credentials: HTTP asks for them (401); a WebSocket closes 4403 either way.
            None if token.is_none() => Err(Reject::unauthorized("missing token", "Bearer")),
            None => Err(Reject::forbidden("invalid token")),
        }
    }

    /// A `ping` with `{"token": ...}`: any currently valid token renews the authorization
    /// for the TTL; an invalid one closes 4403. Without a token, nothing changes.
    async fn on_renew(&self, conn: &ConnectionInfo, payload: Value) -> Renewal {
        let Some(token) = Self::token(&payload) else {
            return Renewal::Keep;
        };
        match (self.authenticate(Some(token)), self.ttl) {
            (Some(_), Some(ttl)) => {
                tracing::debug!(conn = conn.id, "authorization renewed");
                Renewal::Renew(ttl)
            }
            (Some(_), None) => Renewal::Keep,
            (None, _) => Renewal::Refuse,
        }
    }
}
