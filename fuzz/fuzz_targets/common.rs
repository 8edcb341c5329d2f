//! Drives a [`Machine`] with an event script decoded from fuzz input, checking invariants
//! after every step.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_graphql::{Response, ServerError, Value};
use subscope_protocol::{ConnectOutcome, Machine, OperationEvent, Output, Settings, Subprotocol};

/// Every close code PROTOCOL.md section 4 allows subscope to use (or report).
const ALLOWED_CODES: &[u16] = &[
    1000, 1001, 1002, 1006, 1008, 1009, 1011, 1013, 4400, 4401, 4403, 4406, 4408, 4409, 4429,
    4500,
];

const LIMIT: usize = 4;
const IDS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Message templates, so the fuzzer reaches deep states quickly; `{id}` is replaced.
const TEMPLATES: [&str; 12] = [
    r#"{"type":"connection_init"}"#,
    r#"{"type":"connection_init","payload":{"token":"x"}}"#,
    r#"{"type":"subscribe","id":"{id}","payload":{"query":"subscription { t }"}}"#,
    r#"{"type":"start","id":"{id}","payload":{"query":"{ a }","variables":{"v":1}}}"#,
    r#"{"type":"complete","id":"{id}"}"#,
    r#"{"type":"stop","id":"{id}"}"#,
    r#"{"type":"ping","payload":{"n":1}}"#,
    r#"{"type":"pong"}"#,
    r#"{"type":"connection_terminate"}"#,
    r#"{"type":"next","id":"{id}","payload":{}}"#,
    r#"{"type":"subscribe","id":"{id}","payload":{"query":5}}"#,
    r#"not json"#,
];

struct Model {
    machine: Machine,
    now: Instant,
    acked: bool,
    closed: bool,
    live: HashSet<String>,
}

impl Model {
    fn drain(&mut self) {
        while let Some(out) = self.machine.poll_output() {
            assert!(!self.closed, "output after Close: {out:?}");
            match out {
                Output::Text(t) => {
                    if t.contains(r#""type":"connection_ack""#) {
                        self.acked = true;
                    }
                }
                Output::Start { id, .. } => {
                    assert!(self.acked, "operation {id} started before the ack");
                    assert!(self.live.insert(id.clone()), "started {id} twice");
                }
                Output::Stop { id, .. } => {
                    assert!(self.live.remove(&id), "stopped {id} which was not live");
                }
                Output::Close(reason) => {
                    assert!(
                        ALLOWED_CODES.contains(&reason.code()),
                        "close code {} not in the spec",
                        reason.code()
                    );
                    assert!(reason.reason().len() <= 123);
                    self.closed = true;
                    self.live.clear();
                }
                Output::Ping | Output::Connect { .. } => {}
                Output::Renew(_) => assert!(self.acked, "a renewal before the ack"),
                other => panic!("an output the model does not know: {other:?}"),
            }
        }
        assert!(self.live.len() <= LIMIT, "{} live operations", self.live.len());
        assert_eq!(self.live.len(), self.machine.live_operations());
    }
}

/// Runs the script in `data`.
pub fn run(data: &[u8], raw_text: bool) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let protocol = if first & 1 == 0 {
        Subprotocol::GraphqlTransportWs
    } else {
        Subprotocol::GraphqlWs
    };
    let config = Settings::default()
        .max_subscriptions(LIMIT)
        .max_id_length(8)
        .max_init_size(256);
    let now = Instant::now();
    let mut m = Model {
        machine: Machine::new(protocol, &config, now),
        now,
        acked: false,
        closed: false,
        live: HashSet::new(),
    };
    if raw_text {
        // Every line is a text frame as it came off the wire.
        for line in String::from_utf8_lossy(rest).split('\n') {
            m.machine.handle_text(m.now, line);
            m.drain();
        }
        return;
    }
    while let Some((&op, tail)) = rest.split_first() {
        let arg = tail.first().copied().unwrap_or(0);
        rest = tail.get(1..).unwrap_or(&[]);
        let id = IDS[usize::from(arg) % IDS.len()];
        match op % 10 {
            0 => {
                let t = TEMPLATES[usize::from(arg >> 3) % TEMPLATES.len()].replace("{id}", id);
                m.machine.handle_text(m.now, &t);
            }
            1 => {
                let len = usize::from(arg).min(rest.len());
                let (text, tail) = rest.split_at(len);
                rest = tail;
                m.machine.handle_text(m.now, &String::from_utf8_lossy(text));
            }
            2 => m.machine.handle_binary(m.now),
            3 => {
                m.now += Duration::from_millis(u64::from(arg) * 97);
                m.machine.handle_timeout(m.now);
            }
            4 => {
                let outcome = match arg % 3 {
                    0 => ConnectOutcome::Accepted(None),
                    1 => ConnectOutcome::Rejected("no".into()),
                    _ => ConnectOutcome::Failed,
                };
                m.machine.handle_connect(m.now, outcome);
            }
            5 if m.live.contains(id) => {
                let response = if arg & 0x80 == 0 {
                    Response::new(Value::from(1))
                } else {
                    Response::from_errors(vec![ServerError::new("bad", None)])
                };
                m.machine.handle_operation(id, OperationEvent::Response(&response));
            }
            6 if m.live.remove(id) => m.machine.handle_operation(id, OperationEvent::Finished),
            7 if m.live.remove(id) => m.machine.handle_operation(id, OperationEvent::Panicked),
            8 if m.live.contains(id) => {
                m.machine
                    .handle_operation(id, OperationEvent::Refused(&[ServerError::new("refused", None)]));
            }
            9 => match arg % 4 {
                0 => m.machine.handle_write_blocked(m.now),
                1 => m.machine.handle_write_idle(),
                2 => m.machine.handle_ping_frame(m.now),
                _ => m.machine.handle_shutdown(),
            },
            _ => {}
        }
        m.drain();
        if m.machine.poll_timeout().is_some_and(|t| t < m.now) {
            m.machine.handle_timeout(m.now);
            m.drain();
        }
    }
}
