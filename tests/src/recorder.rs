//! Hooks that record every call, and steer `on_connect` from the init payload.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::{Request, ServerError};
use serde_json::Value;
use subscope::{Accept, CloseReason, ConnectionInfo, EndReason, Hooks, Reject};

/// Everything the hooks saw.
#[derive(Debug, Default, Clone)]
pub struct Events {
    /// `(connection, id, reason)` per `on_complete`.
    pub completes: Vec<(u64, String, EndReason)>,
    /// `(connection, reason)` per `on_close`.
    pub closes: Vec<(u64, CloseReason)>,
    /// Connections `on_disconnect` ran for.
    pub disconnects: Vec<u64>,
    /// Operation ids `on_subscribe` ran for.
    pub subscribes: Vec<String>,
    /// What `on_connect` was told about each connection.
    pub connects: Vec<ConnectionInfo>,
}

/// Shared, waitable record of hook calls.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<(Mutex<Events>, Condvar)>,
    hanging: Arc<AtomicUsize>,
}

/// Counts an `on_subscribe` future that never resolves, until it is dropped.
struct Hanging(Arc<AtomicUsize>);

impl Drop for Hanging {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Recorder {
    /// `on_subscribe` futures for `Hang` operations that are still alive (not dropped).
    pub fn hanging_hooks(&self) -> usize {
        self.hanging.load(Ordering::SeqCst)
    }

    fn update(&self, f: impl FnOnce(&mut Events)) {
        let (lock, cv) = &*self.inner;
        f(&mut lock.lock().unwrap_or_else(PoisonError::into_inner));
        cv.notify_all();
    }

    /// Forgets the events so far (keeps the allocations' capacity).
    pub fn clear(&self) {
        self.update(|e| {
            e.completes.clear();
            e.closes.clear();
            e.disconnects.clear();
            e.subscribes.clear();
            e.connects.clear();
        });
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Events {
        self.inner
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `cond` holds for the events, or panics after `within`.
    pub fn wait(&self, what: &str, within: Duration, cond: impl Fn(&Events) -> bool) -> Events {
        let (lock, cv) = &*self.inner;
        let end = Instant::now() + within;
        let mut events = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !cond(&events) {
            let now = Instant::now();
            assert!(
                now < end,
                "timed out after {within:?} waiting for {what}: {events:#?}"
            );
            events = cv
                .wait_timeout(events, end - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        events.clone()
    }

    /// Waits for `n` connections to have run `on_close`.
    pub fn wait_closes(&self, n: usize, within: Duration) -> Events {
        self.wait(&format!("{n} on_close calls"), within, |e| {
            e.closes.len() >= n
        })
    }
}

/// Hooks recording into a [`Recorder`]. `on_connect` reads the init payload:
/// `{"reject": "msg"}` refuses, `{"fail": true}` fails internally, `{"panic": true}`
/// panics, `{"ack": {...}}` becomes the ack payload. `on_subscribe` refuses operations
/// whose `operationName` is `Refused` (with an error) or `RefusedEmpty` (with none),
/// panics for `Panic` and never resolves for `Hang`. A connection whose
/// init payload has `{"panicInDropHooks": true}` gets `on_complete`, `on_disconnect` and
/// `on_close` that record their call and then panic.
#[derive(Debug, Clone, Default)]
pub struct RecordingHooks {
    /// Where calls are recorded.
    pub recorder: Recorder,
    /// Connections whose drop-time hooks panic.
    panicky: Arc<Mutex<HashSet<u64>>>,
}

impl RecordingHooks {
    fn panics_for(&self, conn: &ConnectionInfo) -> bool {
        self.panicky
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&conn.id)
    }
}

impl Hooks for RecordingHooks {
    async fn on_connect(
        &self,
        conn: &ConnectionInfo,
        payload: Option<Value>,
    ) -> Result<Accept, Reject> {
        self.recorder.update(|e| e.connects.push(conn.clone()));
        let payload = payload.unwrap_or(Value::Null);
        if let Some(msg) = payload.get("reject").and_then(Value::as_str) {
            return Err(Reject::forbidden(msg));
        }
        if payload.get("fail").is_some() {
            return Err(Reject::internal("backend down"));
        }
        if payload.get("panic").is_some() {
            panic!("on_connect panics on purpose");
        }
        if payload.get("panicInDropHooks").is_some() {
            self.panicky
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(conn.id);
        }
        let mut accept = Accept::new();
        if let Some(ack) = payload.get("ack") {
            accept = accept.ack_payload(ack.clone());
        }
        Ok(accept)
    }

    async fn on_subscribe(
        &self,
        _conn: &ConnectionInfo,
        id: &str,
        request: Request,
    ) -> Result<Request, Vec<ServerError>> {
        self.recorder.update(|e| e.subscribes.push(id.to_owned()));
        match request.operation_name.as_deref() {
            Some("Refused") => {
                return Err(vec![ServerError::new("refused by on_subscribe", None)]);
            }
            Some("RefusedEmpty") => return Err(Vec::new()),
            Some("Panic") => panic!("on_subscribe panics on purpose"),
            Some("Hang") => {
                self.recorder.hanging.fetch_add(1, Ordering::SeqCst);
                let _alive = Hanging(Arc::clone(&self.recorder.hanging));
                std::future::pending::<()>().await;
            }
            _ => {}
        }
        Ok(request)
    }

    fn on_complete(&self, conn: &ConnectionInfo, id: &str, reason: &EndReason) {
        self.recorder
            .update(|e| e.completes.push((conn.id, id.to_owned(), reason.clone())));
        assert!(!self.panics_for(conn), "on_complete panics on purpose");
    }

    fn on_disconnect(&self, conn: &ConnectionInfo, _reason: &CloseReason) {
        self.recorder.update(|e| e.disconnects.push(conn.id));
        assert!(!self.panics_for(conn), "on_disconnect panics on purpose");
    }

    fn on_close(&self, conn: &ConnectionInfo, reason: &CloseReason) {
        self.recorder
            .update(|e| e.closes.push((conn.id, reason.clone())));
        assert!(!self.panics_for(conn), "on_close panics on purpose");
    }
}
