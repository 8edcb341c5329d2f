//! The leak detector: an operation whose state is kept alive by user code after its
//! stream was dropped is reported (and counted); clean operations are not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Context, EmptyMutation, Object, Schema, Subscription};
use futures_core::Stream;
use serde_json::json;
use subscope::{Config, OperationToken, Server};
use subscope_tests::{Client, DEADLINE, TestRuntime, per_runtime, wait_until};

/// Where the misbehaving resolver stashes clones (schema data, one per test).
type Kept = Arc<Mutex<Vec<OperationToken>>>;

struct Query;
#[Object]
impl Query {
    async fn ok(&self) -> bool {
        true
    }
}

struct Sub;
#[Subscription]
impl Sub {
    /// Keeps a clone of its operation token past its own life: a leak.
    async fn leaky(&self, ctx: &Context<'_>) -> impl Stream<Item = i32> + use<> {
        if let (Ok(token), Ok(kept)) = (ctx.data::<OperationToken>(), ctx.data::<Kept>()) {
            kept.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(token.clone());
        }
        futures_lite::stream::iter([1]).chain(futures_lite::stream::pending())
    }

    /// Looks at its token but keeps nothing.
    async fn clean(&self, ctx: &Context<'_>) -> impl Stream<Item = i32> + use<> {
        assert!(ctx.data::<OperationToken>().is_ok());
        futures_lite::stream::iter([1]).chain(futures_lite::stream::pending())
    }
}

use futures_lite::StreamExt as _;

fn reports_only_operations_kept_alive_by_user_code<R: TestRuntime>() {
    let (rt, guard) = R::runtime();
    let kept = Kept::default();
    let schema = Schema::build(Query, EmptyMutation, Sub)
        .data(Arc::clone(&kept))
        .finish();
    let server = Server::builder(rt, schema)
        .config(subscope_tests::server::suite_config(
            Config::default().detect_leaks(true),
        ))
        .build();
    let addr = R::listen(&guard, &server);
    let mut c = Client::modern(addr);
    c.init(None);
    c.subscribe("leaky", "subscription { leaky }");
    c.subscribe("clean", "subscription { clean }");
    for _ in 0..2 {
        assert_eq!(c.recv_json()["type"], "next");
    }
    c.send(json!({"id": "clean", "type": "complete"}));
    c.send(json!({"id": "leaky", "type": "complete"}));
    let gauges = Arc::clone(server.gauges());
    wait_until("both operations ended", DEADLINE, || {
        gauges.operations() == 0
    });
    assert_eq!(gauges.snapshot().leaked_operations, 1);
    let kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id(), "leaky");
    drop(kept);
    R::block_on(&guard, server.shutdown(Duration::from_secs(1)));
}

/// Shared executions are covered too: the upstream's request carries the token of the
/// operation that started it, judged when the upstream is dropped (with its last
/// subscriber), not when that first subscriber leaves.
fn covers_shared_executions<R: TestRuntime>() {
    let (rt, guard) = R::runtime();
    let kept = Kept::default();
    let schema = Schema::build(Query, EmptyMutation, Sub)
        .data(Arc::clone(&kept))
        .finish();
    let server = Server::builder(rt, schema)
        .config(subscope_tests::server::suite_config(
            Config::default().detect_leaks(true).share_identical(true),
        ))
        .build();
    let addr = R::listen(&guard, &server);
    let gauges = Arc::clone(server.gauges());
    let mut first = Client::modern(addr);
    first.init(None);
    first.subscribe("a", "subscription { leaky }");
    assert_eq!(first.recv_json()["type"], "next");
    let mut second = Client::modern(addr);
    second.init(None);
    second.subscribe("b", "subscription { leaky }");
    wait_until("two subscribers of one upstream", DEADLINE, || {
        let g = gauges.snapshot();
        g.shared_subscriptions == 2 && g.shared_upstreams == 1
    });
    // The starter leaves; the upstream (and the token it holds) lives on: no leak yet.
    first.send(json!({"id": "a", "type": "complete"}));
    wait_until("one subscriber left", DEADLINE, || {
        gauges.snapshot().shared_subscriptions == 1
    });
    assert_eq!(gauges.snapshot().leaked_operations, 0);
    second.send(json!({"id": "b", "type": "complete"}));
    wait_until("the upstream dropped", DEADLINE, || {
        let g = gauges.snapshot();
        g.shared_upstreams == 0 && g.operations == 0
    });
    assert_eq!(
        gauges.snapshot().leaked_operations,
        1,
        "one upstream, one leak"
    );
    assert_eq!(kept.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
    R::block_on(&guard, server.shutdown(Duration::from_secs(1)));
}

per_runtime!(
    reports_only_operations_kept_alive_by_user_code,
    covers_shared_executions
);
