//! Connect / subscribe / vanish cycles mixing every client-side ending, for the churn and
//! heap tests and the soak tool.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::Client;

/// How one cycle ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// TCP reset (`SO_LINGER` 0), modern.
    ResetModern,
    /// TCP reset, legacy.
    ResetLegacy,
    /// FIN without a close frame.
    Eof,
    /// A close frame.
    CloseFrame,
    /// Complete every operation, then vanish.
    CompleteThenReset,
    /// Legacy `connection_terminate`.
    Terminate,
    /// A protocol violation (invalid message, 4400).
    Violation,
    /// The operations end by themselves, then the client vanishes.
    StreamsEnd,
}

impl Ending {
    /// Every ending, in the order cycles use them.
    pub const ALL: [Self; 8] = [
        Self::ResetModern,
        Self::ResetLegacy,
        Self::Eof,
        Self::CloseFrame,
        Self::CompleteThenReset,
        Self::Terminate,
        Self::Violation,
        Self::StreamsEnd,
    ];
}

/// One cycle: connect, init, two subscriptions (one waiting, one streaming), then `ending`.
pub fn cycle(addr: SocketAddr, ending: Ending) {
    let c = open(addr, ending);
    end(c, ending);
}

/// The first half of a cycle: a client with two subscriptions, ready to end by `ending`.
pub fn open(addr: SocketAddr, ending: Ending) -> Client {
    let legacy = matches!(ending, Ending::ResetLegacy | Ending::Terminate);
    let mut c = if legacy {
        Client::legacy(addr)
    } else {
        Client::modern(addr)
    };
    c.init(None);
    let queries = if ending == Ending::StreamsEnd {
        ["subscription { ticks(everyMs: 1, count: 2) }"; 2]
    } else {
        [
            "subscription { delayed(ms: 60000) }",
            "subscription { ticks(everyMs: 50) }",
        ]
    };
    for (i, q) in queries.iter().enumerate() {
        let id = i.to_string();
        if legacy {
            c.start(&id, q);
        } else {
            c.subscribe(&id, q);
        }
    }
    c
}

/// The second half of a cycle: end `c` as `ending` says.
pub fn end(mut c: Client, ending: Ending) {
    match ending {
        Ending::ResetModern | Ending::ResetLegacy => c.reset(),
        Ending::Eof => c.drop_tcp(),
        Ending::CloseFrame => {
            let _ = c.close(1000);
        }
        Ending::CompleteThenReset => {
            for id in ["0", "1"] {
                c.send(json!({"id": id, "type": "complete"}));
            }
            c.reset();
        }
        Ending::Terminate => {
            c.send(json!({"type": "connection_terminate"}));
            c.drop_tcp();
        }
        Ending::Violation => {
            c.send_text("{oops");
            c.drop_tcp();
        }
        Ending::StreamsEnd => {
            let mut completes = 0;
            while completes < 2 {
                if c.recv_json()["type"] == "complete" {
                    completes += 1;
                }
            }
            c.reset();
        }
    }
}

/// Runs up to `count` cycles, cycling through every ending, for at most `within`.
/// Returns how many ran.
pub fn run_cycles(addr: SocketAddr, count: usize, within: Duration) -> usize {
    let end = Instant::now() + within;
    let mut done = 0;
    while done < count && Instant::now() < end {
        cycle(addr, Ending::ALL[done % Ending::ALL.len()]);
        done += 1;
    }
    done
}

/// Runs up to `count` SSE stream cycles (distinct-connection graphql-sse, each its
/// connection's first request), ending them in turn by a TCP reset, by a FIN, and by the
/// stream completing (the kept-alive connection then dropped). Returns how many ran.
pub fn run_sse_cycles(addr: SocketAddr, count: usize, within: Duration) -> usize {
    let end = Instant::now() + within;
    let mut done = 0;
    while done < count && Instant::now() < end {
        match done % 3 {
            0 => {
                let mut r = crate::http::sse(addr, "subscription { ticks(everyMs: 20) }");
                assert!(r.next_event().is_some(), "the stream is live");
                r.reset();
            }
            1 => {
                let mut r = crate::http::sse(addr, "subscription { ticks(everyMs: 20) }");
                assert!(r.next_event().is_some(), "the stream is live");
                let _ = r.socket().shutdown(std::net::Shutdown::Write);
                drop(r);
            }
            _ => {
                let r = crate::http::sse(addr, "subscription { ticks(everyMs: 1, count: 2) }");
                let (_, r) = r.finish();
                drop(r);
            }
        }
        done += 1;
    }
    done
}
