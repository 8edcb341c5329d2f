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

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use subscope::{Accept, ConnectionInfo, Hooks, Reject};

/// The authenticated user, in every resolver's context data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

/// Accepts connections whose init payload carries a known token.
#[derive(Debug, Clone, Default)]
pub struct TokenAuth {
    users: Arc<HashMap<String, String>>,
    open: bool,
}

impl TokenAuth {
    /// Accepts every connection (as user `anonymous`), token or not.
    pub fn open() -> Self {
        Self {
            users: Arc::default(),
            open: true,
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
            open: false,
        }
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
                Ok(Accept::new().data(user))
            }
            // No credentials: HTTP asks for them (401); a WebSocket closes 4403 either way.
            None if token.is_none() => Err(Reject::unauthorized("missing token", "Bearer")),
            None => Err(Reject::forbidden("invalid token")),
        }
    }
}
