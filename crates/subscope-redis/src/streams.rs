//! Streams mode (history on): one reading connection per process, `XREAD` from the last id
//! delivered per topic, replays handed over between two reads.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use subscope_core::rt::Timer;
use subscope_core::{EventId, Missed};

use crate::{
    BACKOFF_MAX, BACKOFF_START, COMMAND_TIMEOUT, Command, Event, Inner, decode, stream_key,
    topic_of,
};

/// How long one `XREAD` waits for new entries before it is issued again.
const BLOCK: Duration = Duration::from_secs(5);
/// How long a read may take to answer `CLIENT UNBLOCK` before it is sent again.
const UNBLOCK_RETRY: Duration = Duration::from_millis(20);
/// Entries read (or replayed) per command.
const PAGE: usize = 512;

/// What the reader knows: the last id delivered per topic with local subscribers.
type Cursors = HashMap<String, EventId>;

/// The reader task. Ends when every `RedisTopics` clone is gone.
pub(crate) async fn read<T: Event, R: Timer>(
    inner: Weak<Inner<T>>,
    rx: async_channel::Receiver<Command<T>>,
    rt: R,
) {
    read_until_gone(inner, &rx, rt).await;
    // Queued resumes hold the engine (their resumer) and the engine holds the queue's
    // sender: drop them, or neither is ever freed.
    while rx.try_recv().is_ok() {}
}

async fn read_until_gone<T: Event, R: Timer>(
    inner: Weak<Inner<T>>,
    rx: &async_channel::Receiver<Command<T>>,
    rt: R,
) {
    let mut cursors = Cursors::new();
    let mut pending: VecDeque<Command<T>> = VecDeque::new();
    let mut backoff = BACKOFF_START;
    let mut lost = false;
    loop {
        let Some(client) = inner.upgrade().map(|i| i.client.clone()) else {
            return;
        };
        let connected = async {
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(BLOCK + COMMAND_TIMEOUT));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let id: u64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((conn, id))
        };
        let (mut conn, id) = match connected.await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, ?backoff, "redis stream reader: connection failed");
                rt.sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let Some(i) = inner.upgrade() else { return };
        i.reader_id.store(id, Ordering::Relaxed);
        if lost {
            // Back: reading on from each cursor replays what was published meanwhile,
            // unless the stream was trimmed past it. Only that is a gap.
            for (topic, cursor) in &cursors {
                match trimmed_past(&mut conn, topic, *cursor).await {
                    Ok(false) => {}
                    Ok(true) => i.fanout.broker_gap_in(topic),
                    Err(err) => {
                        // Unknown is not "nothing lost": the gap is said.
                        tracing::warn!(topic, error = %err, "could not read the stream's record");
                        i.fanout.broker_gap_in(topic);
                    }
                }
            }
            tracing::info!(
                topics = cursors.len(),
                "redis stream reader: back, reading on from the last ids delivered"
            );
        }
        drop(i);
        backoff = BACKOFF_START;
        match serve(&inner, rx, &rt, &mut conn, &mut cursors, &mut pending).await {
            Ok(()) => return,
            Err(err) => {
                let Some(i) = inner.upgrade() else { return };
                lost = true;
                i.reconnects.fetch_add(1, Ordering::Relaxed);
                i.subscribed.store(0, Ordering::Relaxed);
                // The shared command connection (`CLIENT UNBLOCK`, publishes) most likely
                // died with this one: made anew on its next use, not failed with.
                *i.publisher.lock().await = None;
                drop(i);
                tracing::warn!(error = %err, ?backoff, "redis stream reader: connection lost; reconnecting");
                rt.sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Commands and reads on one healthy connection; `Ok` when the topics are gone.
async fn serve<T: Event, R: Timer>(
    inner: &Weak<Inner<T>>,
    rx: &async_channel::Receiver<Command<T>>,
    rt: &R,
    conn: &mut MultiplexedConnection,
    cursors: &mut Cursors,
    pending: &mut VecDeque<Command<T>>,
) -> Result<(), redis::RedisError> {
    loop {
        while let Ok(c) = rx.try_recv() {
            pending.push_back(c);
        }
        while let Some(command) = pending.pop_front() {
            let Some(i) = inner.upgrade() else {
                return Ok(());
            };
            if let Err((command, err)) = handle(&i, conn, cursors, command).await {
                // Kept for the next connection: a resume is never abandoned by a blip.
                pending.push_front(command);
                return Err(err);
            }
            i.subscribed.store(cursors.len(), Ordering::Relaxed);
        }
        if cursors.is_empty() {
            match rx.recv().await {
                Ok(c) => pending.push_back(c),
                Err(_) => return Ok(()),
            }
            continue;
        }
        let reader_id = match inner.upgrade() {
            Some(i) => i.reader_id.load(Ordering::Relaxed),
            None => return Ok(()),
        };
        // The read stays in flight when a command arrives: it is unblocked
        // (`CLIENT UNBLOCK`), and what it returns is delivered before the command runs, so
        // the cursors stay exact.
        let mut read = pin!(xread(conn.clone(), cursors.clone()));
        let mut recv = pin!(rx.recv());
        let first = futures_lite::future::poll_fn(|cx| {
            if let Poll::Ready(r) = read.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            if let Poll::Ready(c) = recv.as_mut().poll(cx) {
                return Poll::Ready(Err(c));
            }
            Poll::Pending
        })
        .await;
        let reply = match first {
            Ok(Err(err)) if !is_transient(&err) => {
                drop_unreadable(inner, conn, cursors, &err).await?;
                continue;
            }
            Ok(reply) => reply?,
            Err(command) => {
                match command {
                    Ok(c) => pending.push_back(c),
                    Err(_) => return Ok(()),
                }
                let Some(i) = inner.upgrade() else {
                    return Ok(());
                };
                let mut unblock = i.publisher().await?;
                drop(i);
                // `CLIENT UNBLOCK` only wakes a read Redis has already blocked; one that
                // is still on its way blocks after it. So it is repeated until the read
                // returns.
                loop {
                    let _: Value = redis::cmd("CLIENT")
                        .arg("UNBLOCK")
                        .arg(reader_id)
                        .query_async(&mut unblock)
                        .await?;
                    let mut retry = rt.sleep(UNBLOCK_RETRY);
                    let done = futures_lite::future::poll_fn(|cx| {
                        if let Poll::Ready(r) = read.as_mut().poll(cx) {
                            return Poll::Ready(Some(r));
                        }
                        retry.as_mut().poll(cx).map(|()| None)
                    })
                    .await;
                    match done {
                        Some(Err(err)) if !is_transient(&err) => {
                            drop_unreadable(inner, conn, cursors, &err).await?;
                            break Vec::new();
                        }
                        Some(reply) => break reply?,
                        None => {}
                    }
                }
            }
        };
        let Some(i) = inner.upgrade() else {
            return Ok(());
        };
        for (key, entries) in reply {
            let topic = topic_of(&key);
            for (id, payload) in entries {
                if let Some(cursor) = cursors.get_mut(topic) {
                    *cursor = (*cursor).max(id);
                }
                if let Some(event) = payload.and_then(|p| decode::<T>(topic, &p)) {
                    i.fanout.deliver(topic, Some(id), event);
                }
            }
        }
    }
}

/// A read failed for good (not the link): the streams it cannot read (a key of another
/// type) leave the read, and their subscribers are told; the others read on.
async fn drop_unreadable<T: Event>(
    inner: &Weak<Inner<T>>,
    conn: &mut MultiplexedConnection,
    cursors: &mut Cursors,
    err: &redis::RedisError,
) -> Result<(), redis::RedisError> {
    tracing::error!(error = %err, "redis stream reader: a read failed; checking its streams");
    let Some(i) = inner.upgrade() else {
        return Ok(());
    };
    let mut dropped = 0;
    for topic in cursors.keys().cloned().collect::<Vec<_>>() {
        let kind: String = redis::cmd("TYPE")
            .arg(stream_key(&topic))
            .query_async(conn)
            .await?;
        if kind != "stream" && kind != "none" {
            tracing::error!(
                topic,
                kind,
                "not a stream: its subscribers are told (BROKER_GAP)"
            );
            cursors.remove(&topic);
            i.fanout.broker_gap_in(&topic);
            dropped += 1;
        }
    }
    if dropped == 0 {
        // Not a key's fault: reconnect and retry, as for a lost link.
        return Err(err.clone());
    }
    Ok(())
}

/// Runs one command; gives it back with the error if Redis failed meanwhile.
async fn handle<T: Event>(
    inner: &Inner<T>,
    conn: &mut MultiplexedConnection,
    cursors: &mut Cursors,
    command: Command<T>,
) -> Result<(), (Command<T>, redis::RedisError)> {
    match command {
        Command::Reconcile(topic, at_ms) => {
            if inner.fanout.subscribers(&topic) == 0 {
                cursors.remove(&topic);
            } else if let Entry::Vacant(vacant) = cursors.entry(topic) {
                match first_cursor(conn, vacant.key(), at_ms).await {
                    Ok(cursor) => {
                        vacant.insert(cursor);
                    }
                    Err(err) => return Err((Command::Reconcile(vacant.into_key(), at_ms), err)),
                }
            }
            Ok(())
        }
        Command::Resume(resumer, after) => {
            let topic = resumer.topic().to_owned();
            if inner.fanout.subscribers(&topic) == 0 {
                // Gone already; nothing to hand over.
                drop(resumer);
                return Ok(());
            }
            // One read of the stream's record serves the cursor (for a topic not read yet)
            // and the replay.
            let replayed = async {
                let info = info(conn, &topic).await?;
                let cursor = *cursors
                    .entry(topic.clone())
                    .or_insert_with(|| cursor_from(info.as_ref(), crate::now_ms()));
                replay::<T>(conn, &topic, after, cursor, info).await
            };
            match replayed.await {
                Ok((gap, events)) => {
                    // Live ids up to `after` are the subscriber's already (it came from a
                    // process whose reader was ahead of this one).
                    let skip = gap.is_none().then_some(after);
                    resumer.resume(gap, events, skip);
                    Ok(())
                }
                Err(err) if is_transient(&err) => Err((Command::Resume(resumer, after), err)),
                Err(err) => {
                    // Retrying cannot help (a key of another type, a denied command): the
                    // subscriber is told (the resumer's drop says the gap) and reading goes on.
                    tracing::error!(topic, error = %err, "a resume failed for good: the gap is said");
                    drop(resumer);
                    Ok(())
                }
            }
        }
    }
}

/// Whether an error may go away by reconnecting (the link, a timeout, a loading or busy
/// server), as opposed to one that repeats (wrong type, denied).
fn is_transient(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN")
        )
}

/// Where the reader starts reading a topic it did not read yet: the moment its first
/// subscriber came, but never past what the stream holds now. An id of the app's clock
/// alone could be ahead of Redis's (another host): entries Redis then numbered below it
/// would be neither replayed nor read.
async fn first_cursor(
    conn: &mut MultiplexedConnection,
    topic: &str,
    at_ms: u64,
) -> Result<EventId, redis::RedisError> {
    Ok(cursor_from(info(conn, topic).await?.as_ref(), at_ms))
}

/// [`first_cursor`] from the stream's record (`None`: no such stream).
fn cursor_from(info: Option<&StreamInfo>, at_ms: u64) -> EventId {
    let by_clock = EventId::new(at_ms.saturating_sub(1), u64::MAX);
    let stream_now = info.map_or(EventId::new(0, 0), |info| info.last_generated);
    by_clock.min(stream_now)
}

/// The stream's facts for a resume: `None` if the key does not exist.
struct StreamInfo {
    first: Option<EventId>,
    last_generated: EventId,
    /// The largest id `XDEL` removed. Trimming (`MAXLEN`) does not record here: it removes
    /// a prefix, so what it removed is everything before `first`.
    max_deleted: EventId,
    /// Whether any entry was ever removed (`entries-added` > `length`; assumed when Redis
    /// is older than 7.0 and does not say).
    any_deleted: bool,
}

impl StreamInfo {
    /// Whether entries after `id` are gone: deleted past it, or trimmed past it (`id`
    /// before the first retained entry, with entries removed; said even when only `id`
    /// itself was trimmed, which the stream cannot tell apart).
    fn lost_after(&self, id: EventId) -> bool {
        id < self.max_deleted
            || (self.any_deleted
                && self
                    .first
                    .map_or(id < self.last_generated, |first| id < first))
    }
}

async fn info(
    conn: &mut MultiplexedConnection,
    topic: &str,
) -> Result<Option<StreamInfo>, redis::RedisError> {
    let reply: Result<Value, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream_key(topic))
        .query_async(conn)
        .await;
    let reply = match reply {
        Ok(v) => v,
        // "ERR no such key": the stream does not exist (never written, or deleted).
        Err(err) if err.code() == Some("ERR") && !err.is_io_error() => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut info = StreamInfo {
        first: None,
        last_generated: EventId::new(0, 0),
        max_deleted: EventId::new(0, 0),
        any_deleted: false,
    };
    let (mut length, mut added) = (0, None);
    for (name, value) in pairs(reply) {
        match name.as_str() {
            "length" => length = int(&value),
            "entries-added" => added = Some(int(&value)),
            "last-generated-id" => {
                info.last_generated = id_of(&value).unwrap_or(info.last_generated)
            }
            "max-deleted-entry-id" => info.max_deleted = id_of(&value).unwrap_or(info.max_deleted),
            "first-entry" => info.first = entry(value).map(|(id, _)| id),
            _ => {}
        }
    }
    info.any_deleted = added.is_none_or(|added| added > length);
    Ok(Some(info))
}

/// Whether the stream of `topic` lost entries after `cursor` (trimmed while the reader was
/// away).
async fn trimmed_past(
    conn: &mut MultiplexedConnection,
    topic: &str,
    cursor: EventId,
) -> Result<bool, redis::RedisError> {
    Ok(match info(conn, topic).await? {
        Some(info) => info.lost_after(cursor) || info.last_generated < cursor,
        // Gone (Redis restarted without persistence, the key deleted): what it held after
        // the cursor is gone too, unless the reader had nothing to wait for.
        None => cursor > EventId::new(0, 0),
    })
}

/// What a subscriber resuming after `after` gets, up to `cursor` (the last id the reader
/// delivered live), given the stream's record `info`: the gap to say (if the stream does
/// not reach back to `after`, or the id is not from it) and the events.
async fn replay<T: Event>(
    conn: &mut MultiplexedConnection,
    topic: &str,
    after: EventId,
    cursor: EventId,
    info: Option<StreamInfo>,
) -> Result<(Option<Missed>, Vec<(EventId, T)>), redis::RedisError> {
    let Some(info) = info else {
        return Ok((Some(Missed::ResumeGap { oldest: None }), Vec::new()));
    };
    // The stream's own record of what was removed (see `lost_after`); an id before the
    // first entry of a stream that never lost one, or beyond anything it generated, is
    // from another stream (Redis was flushed or replaced).
    let foreign = info.first.is_some_and(|first| after < first) || after > info.last_generated;
    let gap = info.lost_after(after) || foreign;
    let mut events = Vec::new();
    let mut from = if gap { None } else { Some(after) };
    loop {
        let start = from.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let page: Value = redis::cmd("XRANGE")
            .arg(stream_key(topic))
            .arg(start)
            .arg(cursor.to_string())
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let page = entries(page);
        let full = page.len() == PAGE;
        for (id, payload) in page {
            from = Some(id);
            if let Some(event) = payload.and_then(|p| decode::<T>(topic, &p)) {
                events.push((id, event));
            }
        }
        if !full {
            break;
        }
    }
    let gap = gap.then(|| Missed::ResumeGap {
        oldest: events.first().map(|(id, _)| *id).or(info.first),
    });
    Ok((gap, events))
}

/// `XREAD COUNT .. BLOCK .. STREAMS k.. id..`: per stream key, its new entries.
async fn xread(
    mut conn: MultiplexedConnection,
    cursors: Cursors,
) -> Result<Vec<(String, Vec<(EventId, Option<Vec<u8>>)>)>, redis::RedisError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(PAGE)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS");
    for topic in cursors.keys() {
        cmd.arg(stream_key(topic));
    }
    for id in cursors.values() {
        cmd.arg(id.to_string());
    }
    let reply: Value = cmd.query_async(&mut conn).await?;
    let streams: Vec<(String, Value)> = match reply {
        // RESP2: `[[key, entries], ...]`; nil when the block timed out.
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((text(&kv.pop()?)?, entries))
                }
                _ => None,
            })
            .collect(),
        map @ Value::Map(_) => pairs(map),
        _ => Vec::new(),
    };
    Ok(streams
        .into_iter()
        .map(|(key, value)| (key, entries(value)))
        .collect())
}

/// `[k, v, k, v]` (RESP2) or a map (RESP3) as name/value pairs; nil as none.
fn pairs(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = text(&k) {
                    out.push((k, v));
                }
            }
            out
        }
        Value::Map(items) => items
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// An integer field (`0` if absent or not one).
fn int(value: &Value) -> u64 {
    match value {
        Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

fn id_of(value: &Value) -> Option<EventId> {
    text(value)?.parse().ok()
}

/// `[id, [field, value, ...]]`: the id and the payload field `p`.
fn entry(value: Value) -> Option<(EventId, Option<Vec<u8>>)> {
    let Value::Array(mut parts) = value else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = id_of(&parts.pop()?)?;
    let mut payload = None;
    if let Value::Array(fields) = fields {
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if text(&k).as_deref() == Some("p")
                && let Value::BulkString(bytes) = v
            {
                payload = Some(bytes);
            }
        }
    }
    Some((id, payload))
}

/// An array of entries.
fn entries(value: Value) -> Vec<(EventId, Option<Vec<u8>>)> {
    match value {
        Value::Array(items) => items.into_iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}
