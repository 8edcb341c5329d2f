//! Shared execution (`Config::share_identical`, `Hooks::share_key`): identical
//! subscriptions run one upstream, every subscriber gets every event after it joined, a
//! slow one lags alone, the upstream is dropped with its last subscriber on every ending
//! path, and a key that includes the tenant keeps tenants apart.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, EmptyMutation, Object, Request, Schema, Subscription};
use futures_core::Stream;
use serde_json::{Value, json};
use subscope::rt::Timer;
use subscope::{
    Accept, CloseReason, Config, ConnectionInfo, Delivery, EndReason, Hooks, Reject, Server,
    ShareKey,
};
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime, wait_until};

const TICKS: &str = "subscription { ticks(everyMs: 20) }";

fn shared(s: &TestServer) -> (u64, u64) {
    let g = s.gauges.snapshot();
    (g.shared_upstreams, g.shared_subscriptions)
}

/// The next `count` ticks a client receives are consecutive.
fn consecutive_ticks(c: &mut Client, count: usize) {
    let mut last: Option<i64> = None;
    for _ in 0..count {
        let m = c.recv_json_skip_ka();
        let tick = m["payload"]["data"]["ticks"].as_i64().expect("a tick");
        if let Some(prev) = last {
            assert_eq!(tick, prev + 1, "a gap or a reorder: {m}");
        }
        last = Some(tick);
    }
}

fn identical_subscriptions_share_one_execution<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    let mut a = Client::modern(s.addr);
    a.init(None);
    a.subscribe("a", TICKS);
    consecutive_ticks(&mut a, 2);
    let mut b = Client::modern(s.addr);
    b.init(None);
    b.subscribe("b", TICKS);
    let mut legacy = Client::legacy(s.addr);
    legacy.init(None);
    legacy.start("l", TICKS);
    wait_until("three subscribers, one upstream", DEADLINE, || {
        shared(&s) == (1, 3) && s.gauges.operations() == 3
    });
    assert_eq!(
        s.live.get(),
        1,
        "one resolver stream for three subscriptions"
    );
    // Every subscriber gets every event from the one it joined at, in order; the legacy
    // one gets the same payload as `data`.
    consecutive_ticks(&mut a, 3);
    consecutive_ticks(&mut b, 3);
    consecutive_ticks(&mut legacy, 3);

    // Three different endings; the upstream lives until the last one.
    a.send(json!({"id": "a", "type": "complete"}));
    wait_until("a left", DEADLINE, || shared(&s) == (1, 2));
    legacy.reset();
    wait_until("the legacy socket reset", DEADLINE, || shared(&s) == (1, 1));
    assert_eq!(s.live.get(), 1);
    consecutive_ticks(&mut b, 2);
    b.close(1000);
    wait_until("the last subscriber gone", DEADLINE, || {
        shared(&s) == (0, 0) && s.live.get() == 0 && s.gauges.operations() == 0
    });
    drop(a);
    s.wait_idle();
    let completes = s.recorder.events().completes;
    let reasons: Vec<&EndReason> = completes.iter().map(|(_, _, r)| r).collect();
    assert_eq!(
        completes.len(),
        3,
        "on_complete exactly once each: {reasons:?}"
    );
    assert!(reasons.contains(&&EndReason::ClientStopped));
    assert!(
        reasons.contains(&&EndReason::ConnectionClosed(CloseReason::PeerGone)),
        "{reasons:?}"
    );
}

fn a_finished_upstream_is_not_joined<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    let q = "subscription { ticks(everyMs: 10, count: 2) }";
    for id in ["1", "2"] {
        let mut c = Client::modern(s.addr);
        c.init(None);
        c.subscribe(id, q);
        // Each gets the whole finite stream: the second one starts a new upstream.
        assert_eq!(c.recv_json()["payload"]["data"]["ticks"], 0);
        assert_eq!(c.recv_json()["payload"]["data"]["ticks"], 1);
        assert_eq!(c.recv_json(), json!({"id": id, "type": "complete"}));
    }
    wait_until("nothing shared left", DEADLINE, || shared(&s) == (0, 0));
}

fn request_errors_reach_every_subscriber_of_the_key<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.subscribe("x", "subscription { nope }");
    let m = c.recv_json();
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["id"], "x");
    // The id is free again and nothing is left over.
    wait_until("no upstream left", DEADLINE, || shared(&s) == (0, 0));
    c.subscribe("x", TICKS);
    assert_eq!(c.recv_json()["type"], "next");
}

fn a_panicking_upstream_ends_every_subscriber_with_an_error<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    let q = "subscription { panicking(after: 1) }";
    let mut clients: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = Client::modern(s.addr);
            c.init(None);
            c.subscribe(&format!("p{i}"), q);
            c
        })
        .collect();
    for c in &mut clients {
        // Joiners may miss the one item; every subscriber ends with the error.
        let mut m = c.recv_json();
        if m["type"] == "next" {
            m = c.recv_json();
        }
        assert_eq!(m["type"], "error", "{m}");
        assert_eq!(m["payload"][0]["message"], "Internal server error");
    }
    wait_until("nothing shared left", DEADLINE, || shared(&s) == (0, 0));
    // The connections go on.
    for c in &mut clients {
        c.subscribe("t", TICKS);
        assert_eq!(c.recv_json()["type"], "next");
    }
}

fn queries_and_mutations_never_share<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    let mut sub = Client::modern(s.addr);
    sub.init(None);
    sub.subscribe("m", "subscription { messages(topic: \"once\") }");
    s.wait_live(1);
    let publish = "mutation { publish(topic: \"once\", message: \"hi\") }";
    let mut pubs: Vec<Client> = (0..2)
        .map(|i| {
            let mut c = Client::modern(s.addr);
            c.init(None);
            c.subscribe(&format!("p{i}"), publish);
            c
        })
        .collect();
    for p in &mut pubs {
        assert_eq!(p.recv_json()["payload"]["data"]["publish"], 1);
    }
    // Both identical mutations ran: the subscriber got the message twice.
    for _ in 0..2 {
        assert_eq!(sub.recv_json()["payload"]["data"]["messages"], "hi");
    }
    assert_eq!(
        s.gauges.snapshot().shared_upstreams,
        1,
        "only the subscription"
    );
}

fn a_slow_subscriber_lags_alone<R: TestRuntime>() {
    let config = Config::default()
        .share_identical(true)
        .shared_delivery(Delivery::default().buffer(8));
    let s = R::start(subscope_tests::server::volume_config(config));
    let q = "subscription { payload(bytes: 8192, everyMs: 1) }";
    let mut slow = Client::modern_with_receive_buffer(s.addr, 4096);
    slow.init(None);
    slow.subscribe("s", q);
    let mut fast = Client::modern(s.addr);
    fast.init(None);
    fast.subscribe("f", q);
    // The slow one reads nothing; the fast one goes on well past its buffer.
    for _ in 0..300 {
        assert_eq!(fast.recv_json()["type"], "next");
    }
    wait_until("the slow one lagged", DEADLINE, || {
        s.gauges.snapshot().subscriptions_lagged == 1
    });
    assert!(s.gauges.snapshot().events_dropped >= 1);
    // It is told: what was queued, then SUBSCRIBER_LAGGED, then complete.
    let mut told = false;
    loop {
        let m = slow.recv_json();
        if m["type"] == "complete" {
            break;
        }
        if m["payload"]["errors"][0]["extensions"]["code"] == "SUBSCRIBER_LAGGED" {
            told = true;
        }
    }
    assert!(told, "the lag was not reported");
    for _ in 0..50 {
        assert_eq!(fast.recv_json()["type"], "next", "the fast one goes on");
    }
}

fn shutdown_drops_shared_upstreams<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    let mut clients: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = Client::modern(s.addr);
            c.init(None);
            c.subscribe(&format!("d{i}"), "subscription { delayed(ms: 60000) }");
            c
        })
        .collect();
    wait_until("three subscribers, one upstream", DEADLINE, || {
        shared(&s) == (1, 3)
    });
    s.shutdown(Duration::from_secs(5));
    assert_eq!(s.live.get(), 0, "shutdown returned with the upstream alive");
    assert_eq!(shared(&s), (0, 0));
    for c in &mut clients {
        assert_eq!(c.expect_close(), (1001, "Going away".into()));
    }
}

/// Ways one subscriber's connection can end.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Complete,
    CloseFrame,
    Reset,
    Fin,
    ProtocolViolation,
    SecondInit,
}

fn end(c: &mut Option<Client>, how: Ending) {
    let id = "m";
    match how {
        Ending::Complete => {
            if let Some(c) = c.as_mut() {
                c.send(json!({"id": id, "type": "complete"}));
            }
        }
        Ending::CloseFrame => drop(c.take().map(|c| c.close(1000))),
        Ending::Reset => {
            if let Some(c) = c.take() {
                c.reset();
            }
        }
        Ending::Fin => {
            if let Some(c) = c.take() {
                c.drop_tcp();
            }
        }
        Ending::ProtocolViolation => {
            if let Some(c) = c.as_mut() {
                c.send_text("{nope");
                assert_eq!(c.expect_close_skipping_data().0, 4400);
            }
        }
        Ending::SecondInit => {
            if let Some(c) = c.as_mut() {
                c.send(json!({"type": "connection_init"}));
                assert_eq!(c.expect_close_skipping_data().0, 4429);
            }
        }
    }
}

/// Every way a subscriber can go: the upstream outlives the first one to leave and is
/// dropped with the last, and every subscriber completes exactly once.
fn the_upstream_ends_with_its_last_subscriber_on_every_path<R: TestRuntime>() {
    let s = R::start(Config::default().share_identical(true));
    for how in [
        Ending::Complete,
        Ending::CloseFrame,
        Ending::Reset,
        Ending::Fin,
        Ending::ProtocolViolation,
        Ending::SecondInit,
    ] {
        s.recorder.clear();
        let mut clients: Vec<Option<Client>> = (0..2)
            .map(|_| {
                let mut c = Client::modern(s.addr);
                c.init(None);
                c.subscribe("m", "subscription { delayed(ms: 60000) }");
                Some(c)
            })
            .collect();
        wait_until("two subscribers, one upstream", DEADLINE, || {
            shared(&s) == (1, 2) && s.live.get() == 1
        });
        end(&mut clients[0], how);
        wait_until(&format!("{how:?}: one subscriber left"), DEADLINE, || {
            shared(&s) == (1, 1)
        });
        assert_eq!(s.live.get(), 1, "{how:?}: the upstream died with the first");
        end(&mut clients[1], how);
        wait_until(&format!("{how:?}: upstream dropped"), DEADLINE, || {
            shared(&s) == (0, 0) && s.live.get() == 0 && s.gauges.operations() == 0
        });
        drop(clients);
        s.wait_idle();
        let completes = s.recorder.events().completes;
        assert_eq!(completes.len(), 2, "{how:?}: {completes:?}");
    }
}

/// The tenant of a connection: its `X-Tenant` upgrade header.
#[derive(Debug, Clone)]
struct Tenant(String);

fn tenant_of(conn: &ConnectionInfo) -> String {
    conn.headers
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

struct TenantHooks {
    key_includes_tenant: bool,
}

impl Hooks for TenantHooks {
    async fn on_connect(&self, conn: &ConnectionInfo, _: Option<Value>) -> Result<Accept, Reject> {
        Ok(Accept::new().data(Tenant(tenant_of(conn))))
    }

    fn share_key(&self, conn: &ConnectionInfo, request: &Request) -> Option<ShareKey> {
        let key = ShareKey::of(request);
        Some(if self.key_includes_tenant {
            key.with(tenant_of(conn))
        } else {
            key
        })
    }
}

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
    /// The caller's tenant (from its session data), every 10 ms.
    async fn tenant(&self, ctx: &Context<'_>) -> impl Stream<Item = String> + use<> {
        let name = ctx
            .data::<Tenant>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let timer = Arc::clone(ctx.data_unchecked::<Arc<dyn Timer>>());
        futures_lite::stream::unfold((), move |()| {
            let (timer, name) = (Arc::clone(&timer), name.clone());
            async move {
                timer.sleep(Duration::from_millis(10)).await;
                Some((name, ()))
            }
        })
    }
}

fn tenant_client(addr: std::net::SocketAddr, tenant: &str) -> Client {
    let headers = [
        "Sec-WebSocket-Protocol: graphql-transport-ws".to_owned(),
        format!("X-Tenant: {tenant}"),
    ];
    let mut c = Client::try_connect(addr, "/graphql", &headers).expect("upgrade");
    c.init(None);
    c.subscribe("t", "subscription { tenant }");
    c
}

fn tenants_seen(c: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let m = c.recv_json();
            m["payload"]["data"]["tenant"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

fn a_key_with_the_tenant_keeps_tenants_apart<R: TestRuntime>() {
    for key_includes_tenant in [true, false] {
        let (rt, guard) = R::runtime();
        let timer: Arc<dyn Timer> = Arc::new(rt.clone());
        let schema = Schema::build(Query, EmptyMutation, Sub)
            .data(timer)
            .finish();
        let server = Server::builder(rt, schema)
            .hooks(TenantHooks {
                key_includes_tenant,
            })
            .config(subscope_tests::server::suite_config(Config::default()))
            .build();
        let addr = R::listen(&guard, &server);
        let gauges = Arc::clone(server.gauges());
        let mut a1 = tenant_client(addr, "a");
        assert_eq!(tenants_seen(&mut a1, 1), ["a"]);
        let mut a2 = tenant_client(addr, "a");
        let mut b1 = tenant_client(addr, "b");
        let a2_saw = tenants_seen(&mut a2, 5);
        let b1_saw = tenants_seen(&mut b1, 5);
        assert!(a2_saw.iter().all(|t| t == "a"), "{a2_saw:?}");
        if key_includes_tenant {
            assert!(
                b1_saw.iter().all(|t| t == "b"),
                "b saw another tenant: {b1_saw:?}"
            );
            assert_eq!(gauges.snapshot().shared_upstreams, 2, "one per tenant");
        } else {
            // The control: a key without the tenant shares across tenants, and b sees a's
            // data. That is what the key is for.
            assert!(b1_saw.iter().all(|t| t == "a"), "{b1_saw:?}");
            assert_eq!(gauges.snapshot().shared_upstreams, 1);
        }
        assert_eq!(gauges.snapshot().shared_subscriptions, 3);
        R::block_on(&guard, server.shutdown(Duration::from_secs(2)));
        assert_eq!(gauges.snapshot().shared_upstreams, 0);
    }
}

per_runtime!(
    identical_subscriptions_share_one_execution,
    a_finished_upstream_is_not_joined,
    request_errors_reach_every_subscriber_of_the_key,
    queries_and_mutations_never_share,
    a_panicking_upstream_ends_every_subscriber_with_an_error,
    a_slow_subscriber_lags_alone,
    shutdown_drops_shared_upstreams,
    the_upstream_ends_with_its_last_subscriber_on_every_path,
    a_key_with_the_tenant_keeps_tenants_apart,
);
