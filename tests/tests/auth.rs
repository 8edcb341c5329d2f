//! No `subscribe`/`start` reaches a resolver before a successful `on_connect`, on either
//! subprotocol (the Python server subscope is measured against had exactly that hole in its
//! legacy handler). Uses the example `TokenAuth` hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::{Context, EmptyMutation, Object, Result, Schema, Subscription};
use futures_core::Stream;
use serde_json::json;
use subscope::{Config, Server};
use subscope_examples::auth::{TokenAuth, User};
use subscope_tests::{Client, DEADLINE, TestRuntime, per_runtime};

/// Counts every resolver call.
type Calls = Arc<AtomicUsize>;

struct Query;
#[Object]
impl Query {
    async fn me(&self, ctx: &Context<'_>) -> Result<String> {
        ctx.data::<Calls>()?.fetch_add(1, Ordering::SeqCst);
        Ok(ctx.data::<User>()?.0.clone())
    }
}

struct Sub;
#[Subscription]
impl Sub {
    async fn whoami(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = String> + use<>> {
        ctx.data::<Calls>()?.fetch_add(1, Ordering::SeqCst);
        let user = ctx.data::<User>()?.0.clone();
        Ok(futures_lite::stream::iter([user]))
    }
}

struct Fixture<R: TestRuntime> {
    addr: std::net::SocketAddr,
    calls: Calls,
    server: Server<Schema<Query, EmptyMutation, Sub>, TokenAuth, R::Rt>,
    guard: R::Guard,
}

impl<R: TestRuntime> Drop for Fixture<R> {
    fn drop(&mut self) {
        R::block_on(&self.guard, self.server.shutdown(Duration::ZERO));
    }
}

fn start<R: TestRuntime>() -> Fixture<R> {
    let (rt, guard) = R::runtime();
    let calls = Calls::default();
    let schema = Schema::build(Query, EmptyMutation, Sub)
        .data(Arc::clone(&calls))
        .finish();
    let server = Server::builder(rt, schema)
        .hooks(TokenAuth::new([("s3cret", "alice")]))
        .config(subscope_tests::server::suite_config(Config::default()))
        .build();
    let addr = R::listen(&guard, &server);
    Fixture {
        addr,
        calls,
        server,
        guard,
    }
}

fn operation(legacy: bool, id: &str, query: &str) -> serde_json::Value {
    let ty = if legacy { "start" } else { "subscribe" };
    json!({"id": id, "type": ty, "payload": {"query": query}})
}

fn client(f: &std::net::SocketAddr, legacy: bool) -> Client {
    if legacy {
        Client::legacy(*f)
    } else {
        Client::modern(*f)
    }
}

fn nothing_reaches_a_resolver_without_a_good_token<R: TestRuntime>() {
    let f = start::<R>();
    for legacy in [false, true] {
        // Before any init.
        let mut c = client(&f.addr, legacy);
        c.send(operation(legacy, "1", "{ me }"));
        assert_eq!(c.expect_close().0, 4401);

        // With a bad token, then trying anyway.
        let mut c = client(&f.addr, legacy);
        c.send(json!({"type": "connection_init", "payload": {"token": "guess"}}));
        c.send(operation(legacy, "1", "subscription { whoami }"));
        // The subscribe waits behind on_connect, which refuses: modern closes 4403;
        // legacy sends connection_error, then closes 1011.
        if legacy {
            let m = c.recv_json();
            assert_eq!(m["type"], "connection_error", "{m}");
            assert_eq!(c.expect_close(), (1011, "Forbidden".into()));
        } else {
            assert_eq!(c.expect_close(), (4403, "Forbidden".into()));
        }

        // No token at all.
        let mut c = client(&f.addr, legacy);
        c.send(json!({"type": "connection_init"}));
        c.send(operation(legacy, "1", "{ me }"));
        let _ = c.expect_close_skipping_data();
    }
    assert_eq!(
        f.calls.load(Ordering::SeqCst),
        0,
        "a resolver ran without authentication"
    );

    // The good token reaches resolvers, with the user in their data.
    for legacy in [false, true] {
        let mut c = client(&f.addr, legacy);
        c.init(Some(json!({"Authorization": "Bearer s3cret"})));
        c.send(operation(legacy, "me", "{ me }"));
        assert_eq!(c.recv_json_skip_ka()["payload"]["data"]["me"], "alice");
        c.send(operation(legacy, "who", "subscription { whoami }"));
        assert_eq!(c.recv_json_skip_ka()["type"], "complete");
        assert_eq!(c.recv_json_skip_ka()["payload"]["data"]["whoami"], "alice");
    }
    subscope_tests::wait_until("4 resolver calls", DEADLINE, || {
        f.calls.load(Ordering::SeqCst) == 4
    });
}

per_runtime!(nothing_reaches_a_resolver_without_a_good_token);
