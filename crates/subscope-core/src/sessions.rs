//! The live authorized sessions of one server (WebSocket connections and HTTP streams), so
//! the application can revoke them by a predicate ([`crate::Server::revoke`]).

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::Data;
use slab::Slab;

use crate::ConnectionInfo;
use crate::sync::Signal;

/// What a revocation predicate sees of one session: its connection and the data its
/// `on_connect` put in [`crate::Accept::data`].
#[derive(Clone, Copy)]
pub struct Session<'a> {
    conn: &'a ConnectionInfo,
    data: &'a Data,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn.id)
            .finish_non_exhaustive()
    }
}

impl<'a> Session<'a> {
    /// The connection (or HTTP stream) this session belongs to.
    pub fn conn(&self) -> &'a ConnectionInfo {
        self.conn
    }

    /// A value `on_connect` put in the session data, by type.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&'a T> {
        self.data
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
    }
}

struct Entry {
    conn: Arc<ConnectionInfo>,
    data: Arc<Data>,
    revoked: Arc<Signal>,
}

/// The registry.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<Slab<Entry>>,
}

/// Holds a session's place in the registry; dropping it leaves.
pub(crate) struct Registered {
    sessions: Arc<Sessions>,
    key: usize,
    /// Raised when the session is revoked.
    pub(crate) revoked: Arc<Signal>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sessions
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_remove(self.key);
    }
}

impl Sessions {
    /// Registers an authorized session.
    pub(crate) fn register(
        self: &Arc<Self>,
        conn: Arc<ConnectionInfo>,
        data: Arc<Data>,
    ) -> Registered {
        let revoked = Arc::new(Signal::default());
        let key = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Entry {
                conn,
                data,
                revoked: Arc::clone(&revoked),
            });
        Registered {
            sessions: Arc::clone(self),
            key,
            revoked,
        }
    }

    /// Raises the revocation of every live session `matches`; returns how many. Each ends
    /// on its own task (WebSocket 4403, HTTP streams `TOKEN_REVOKED`).
    pub(crate) fn revoke(&self, matches: impl Fn(Session<'_>) -> bool) -> usize {
        // The predicate is the application's code: it runs without the registry's lock.
        let live: Vec<(Arc<ConnectionInfo>, Arc<Data>, Arc<Signal>)> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, e)| {
                (
                    Arc::clone(&e.conn),
                    Arc::clone(&e.data),
                    Arc::clone(&e.revoked),
                )
            })
            .collect();
        let mut ended = 0;
        for (conn, data, revoked) in live {
            if !revoked.is_raised()
                && matches(Session {
                    conn: &conn,
                    data: &data,
                })
            {
                revoked.raise();
                ended += 1;
            }
        }
        ended
    }
}
