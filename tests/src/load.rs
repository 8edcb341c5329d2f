//! Load shapes a real user applies: a publisher that keeps a window of mutations in
//! flight, and subscribers that count what they get.

use std::collections::HashMap;

use serde_json::json;

use crate::Client;

/// Publishes `messages` to `topic` with `publish` mutations on `c` (an acknowledged
/// `graphql-transport-ws` client), keeping `window` of them in flight: a new one goes out
/// as soon as one completes, as any real producer does. Returns each mutation's result
/// (receivers), in message order.
pub fn publish_pipelined(
    c: &mut Client,
    topic: &str,
    messages: &[String],
    window: usize,
) -> Vec<u64> {
    let mut results = vec![None; messages.len()];
    let mut next = 0;
    let send = |c: &mut Client, i: usize| {
        let q = format!(
            "mutation {{ publish(topic: {}, message: {}) }}",
            json!(topic),
            json!(messages[i])
        );
        c.send(json!({"type": "subscribe", "id": format!("p{i}"), "payload": {"query": q}}));
    };
    while next < messages.len().min(window) {
        send(c, next);
        next += 1;
    }
    let mut done = 0;
    while done < messages.len() {
        let m = c.recv_json();
        let id = m["id"].as_str().unwrap_or_default();
        let i: usize = id
            .strip_prefix('p')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("publisher got {m}"));
        match m["type"].as_str() {
            Some("next") => {
                let n = m["payload"]["data"]["publish"].as_u64();
                results[i] = Some(n.unwrap_or_else(|| panic!("publish failed: {m}")));
            }
            Some("complete") => {
                done += 1;
                if next < messages.len() {
                    send(c, next);
                    next += 1;
                }
            }
            _ => panic!("publisher got {m}"),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every publish answered"))
        .collect()
}

/// What one subscriber client saw, per operation id: the `messages` values in order, and
/// how the operation ended.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// `messages` values per operation id, in arrival order.
    pub values: HashMap<String, Vec<String>>,
    /// The final error item per operation id (`payload.errors[0]`), if any.
    pub errors: HashMap<String, serde_json::Value>,
    /// Operation ids that completed.
    pub completed: Vec<String>,
}

impl Received {
    /// Reads `c` until `per_id` values arrived for each of `ids` (or an id ended).
    pub fn read(c: &mut Client, ids: &[String], per_id: usize) -> Self {
        let mut r = Self::default();
        let open = |r: &Self, id: &String| {
            !r.completed.contains(id) && r.values.get(id).map_or(0, Vec::len) < per_id
        };
        while ids.iter().any(|id| open(&r, id)) {
            r.take(c.recv_json_skip_ka());
        }
        r
    }

    /// Records one message.
    pub fn take(&mut self, m: serde_json::Value) {
        let id = m["id"].as_str().unwrap_or_default().to_owned();
        match m["type"].as_str() {
            Some("next" | "data") => {
                if let Some(v) = m["payload"]["data"]["messages"].as_str() {
                    self.values.entry(id).or_default().push(v.to_owned());
                } else {
                    self.errors.insert(id, m["payload"]["errors"][0].clone());
                }
            }
            Some("complete") => self.completed.push(id),
            _ => panic!("subscriber got {m}"),
        }
    }
}
