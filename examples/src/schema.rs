//! The demo schema's resolvers.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Error, Object, Result, Schema, SimpleObject, Subscription};
use futures_core::Stream;
use futures_lite::stream;
use subscope::rt::Timer;
use subscope::{Gauges, Missed};

use crate::auth::TokenAuth;
use crate::{Broker, LiveCounter, LiveGuard};

/// The demo schema type.
pub type DemoSchema = Schema<Query, Mutation, Subscription>;

/// The live-stream counter, as stored in the schema data.
pub type LiveStreams = LiveCounter;

/// Largest `payload(bytes:)` item, so one client cannot make the server allocate without bound.
const MAX_PAYLOAD: i32 = 16 * 1024 * 1024;

/// Builds the demo schema. `timer` drives every sleep; `gauges` are what `serverStats` reads.
pub fn build_schema(
    timer: Arc<dyn Timer>,
    gauges: Arc<Gauges>,
    broker: Broker,
    live: LiveCounter,
) -> DemoSchema {
    build_schema_with_auth(timer, gauges, broker, live, None)
}

/// [`build_schema`], with the hooks' token authority, which `revokeToken` uses.
pub fn build_schema_with_auth(
    timer: Arc<dyn Timer>,
    gauges: Arc<Gauges>,
    broker: Broker,
    live: LiveCounter,
    auth: Option<TokenAuth>,
) -> DemoSchema {
    let mut schema = Schema::build(Query, Mutation, Subscription)
        .data(timer)
        .data(gauges)
        .data(broker)
        .data(live);
    if let Some(auth) = auth {
        schema = schema.data(auth);
    }
    schema.finish()
}

/// Root query.
#[derive(Debug, Default)]
pub struct Query;

/// The library's gauges, as GraphQL.
#[derive(Debug, SimpleObject)]
pub struct ServerStats {
    /// WebSocket connections alive now.
    connections: u64,
    /// Operations alive now, every kind (the name predates the gauges' vocabulary: the
    /// same number as `operations`).
    subscriptions: u64,
    /// Connections ever accepted.
    connections_total: u64,
    /// Operations ever accepted, every kind (the same number as `operationsTotal`).
    subscriptions_total: u64,
    /// Operations alive now, every kind and transport.
    operations: u64,
    /// Operations ever accepted, every kind and transport.
    operations_total: u64,
    /// Subscription operations alive now.
    live_subscriptions: u64,
    /// Topic events a slow subscriber did not receive (its buffer was full).
    events_dropped: u64,
    /// Subscriptions ended because their buffer overflowed (`--overflow end`).
    subscriptions_lagged: u64,
    /// Subscribers told of a broker gap (Redis connection lost and back).
    broker_gaps: u64,
    /// Resumed subscribers told `RESUME_GAP` (`--history` did not reach back).
    resume_gaps: u64,
    /// Retained events handed to resumed subscribers.
    events_replayed: u64,
    /// Shared executions alive now (`--share`).
    shared_upstreams: u64,
    /// Operations alive now that subscribe to a shared execution (`--share`).
    shared_subscriptions: u64,
    /// WebSocket connections that agreed on permessage-deflate (`--deflate`).
    deflate_connections_total: u64,
    /// zlib streams connections hold now (`--deflate`): what compression costs in memory.
    deflate_streams: u64,
    /// Outbound message bytes compressed with permessage-deflate...
    deflate_payload_bytes_total: u64,
    /// ...and the compressed bytes they took on the wire.
    deflate_wire_bytes_total: u64,
}

#[Object]
impl Query {
    /// Always "world".
    async fn hello(&self) -> &'static str {
        "world"
    }

    /// Demo subscription streams alive now (their drop guards not yet run).
    async fn live_streams(&self, ctx: &Context<'_>) -> Result<usize> {
        Ok(ctx.data::<LiveCounter>()?.get())
    }

    /// The library's gauges.
    async fn server_stats(&self, ctx: &Context<'_>) -> Result<ServerStats> {
        let s = ctx.data::<Arc<Gauges>>()?.snapshot();
        Ok(ServerStats {
            connections: s.connections,
            subscriptions: s.operations,
            connections_total: s.connections_total,
            subscriptions_total: s.operations_total,
            operations: s.operations,
            operations_total: s.operations_total,
            live_subscriptions: s.subscriptions,
            events_dropped: s.events_dropped,
            subscriptions_lagged: s.subscriptions_lagged,
            broker_gaps: s.broker_gaps,
            resume_gaps: s.resume_gaps,
            events_replayed: s.events_replayed,
            shared_upstreams: s.shared_upstreams,
            shared_subscriptions: s.shared_subscriptions,
            deflate_connections_total: s.deflate_connections_total,
            deflate_streams: s.deflate_streams,
            deflate_payload_bytes_total: s.deflate_payload_bytes_total,
            deflate_wire_bytes_total: s.deflate_wire_bytes_total,
        })
    }
}

/// Root mutation.
#[derive(Debug, Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    /// Makes `token` invalid from now on and ends every WebSocket connection and HTTP stream
    /// it authorized (the caller's own too, after this result); returns how many.
    async fn revoke_token(&self, ctx: &Context<'_>, token: String) -> Result<usize> {
        ctx.data::<TokenAuth>()?
            .revoke(&token)
            .ok_or_else(|| Error::new("revocation is not set up on this server"))
    }

    /// Publishes `message` to `topic`; returns how many subscribers it reached.
    async fn publish(&self, ctx: &Context<'_>, topic: String, message: String) -> Result<usize> {
        ctx.data::<Broker>()?
            .publish(&topic, message)
            .await
            .map_err(Error::new)
    }
}

/// Root subscription.
#[derive(Debug, Default)]
pub struct Subscription;

fn non_negative(name: &str, value: i32) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::new(format!("{name} must be >= 0")))
}

struct Env {
    timer: Arc<dyn Timer>,
    guard: LiveGuard,
}

fn env(ctx: &Context<'_>) -> Result<Env> {
    Ok(Env {
        timer: Arc::clone(ctx.data::<Arc<dyn Timer>>()?),
        guard: ctx.data::<LiveCounter>()?.guard(),
    })
}

#[Subscription]
impl Subscription {
    /// 0, 1, 2, ... one every `everyMs` (the first at once); ends after `count` if given.
    async fn ticks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] every_ms: i32,
        count: Option<i32>,
    ) -> Result<impl Stream<Item = i32> + use<>> {
        let every = Duration::from_millis(non_negative("everyMs", every_ms)?);
        let count = count.map(|c| non_negative("count", c)).transpose()?;
        let env = env(ctx)?;
        Ok(stream::unfold((0i32, env), move |(i, env)| async move {
            if count.is_some_and(|c| u64::try_from(i).unwrap_or(0) >= c) {
                return None;
            }
            if i > 0 {
                env.timer.sleep(every).await;
            }
            Some((i, (i.wrapping_add(1), env)))
        }))
    }

    /// Sleeps `ms`, yields `value` once, ends.
    async fn delayed(
        &self,
        ctx: &Context<'_>,
        ms: i32,
        #[graphql(default = "done")] value: String,
    ) -> Result<impl Stream<Item = String> + use<>> {
        let wait = Duration::from_millis(non_negative("ms", ms)?);
        let env = env(ctx)?;
        Ok(stream::once_future(async move {
            env.timer.sleep(wait).await;
            drop(env.guard);
            value
        }))
    }

    /// Everything published to `topic` from now on, in order; with `--history`, resumed
    /// after the `lastEventId` the client sends (each result has its `extensions.eventId`).
    /// A subscriber that falls `--subscriber-buffer` events behind is treated under
    /// `--overflow`: with `end`, it gets one last item with an error whose
    /// `extensions.code` is `SUBSCRIBER_LAGGED` (or `BROKER_GAP` after a Redis outage),
    /// then `complete`. A resume that history no longer covers starts with `RESUME_GAP`.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        topic: String,
    ) -> Result<impl Stream<Item = Result<String, Missed>> + use<>> {
        let guard = ctx.data::<LiveCounter>()?.guard();
        let events = ctx.data::<Broker>()?.resume(ctx, &topic);
        // The guard lives as long as the stream.
        Ok(futures_lite::StreamExt::map(events, move |event| {
            let _ = &guard;
            event
        }))
    }

    /// `after` items, then an item with a resolver error, then ends.
    async fn failing(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0)] after: i32,
    ) -> Result<impl Stream<Item = Result<i32>> + use<>> {
        let after = non_negative("after", after)?;
        let guard = ctx.data::<LiveCounter>()?.guard();
        Ok(stream::unfold(
            (0u64, Some(guard)),
            move |(i, guard)| async move {
                let guard = guard?;
                if i < after {
                    Some((Ok(i as i32), (i + 1, Some(guard))))
                } else {
                    drop(guard);
                    Some((Err(Error::new("failing on purpose")), (i + 1, None)))
                }
            },
        ))
    }

    /// `after` items, then panics inside the stream.
    async fn panicking(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0)] after: i32,
    ) -> Result<impl Stream<Item = i32> + use<>> {
        let after = non_negative("after", after)?;
        let guard = ctx.data::<LiveCounter>()?.guard();
        Ok(stream::unfold(
            (0u64, guard),
            move |(i, guard)| async move {
                if i >= after {
                    panic!("panicking on purpose");
                }
                Some((i as i32, (i + 1, guard)))
            },
        ))
    }

    /// Items of `bytes` characters, one every `everyMs` (0: as fast as the socket takes them).
    async fn payload(
        &self,
        ctx: &Context<'_>,
        bytes: i32,
        #[graphql(default = 0)] every_ms: i32,
    ) -> Result<impl Stream<Item = String> + use<>> {
        if !(0..=MAX_PAYLOAD).contains(&bytes) {
            return Err(Error::new(format!(
                "bytes must be within 0..={MAX_PAYLOAD}"
            )));
        }
        let every = Duration::from_millis(non_negative("everyMs", every_ms)?);
        let item = "x".repeat(bytes as usize);
        let env = env(ctx)?;
        Ok(stream::unfold((true, env), move |(first, env)| {
            let item = item.clone();
            async move {
                if !first && !every.is_zero() {
                    env.timer.sleep(every).await;
                }
                Some((item, (false, env)))
            }
        }))
    }
}
