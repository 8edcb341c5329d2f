//! The connection future dropped from outside (server abort, runtime shutdown, a
//! caller's `select!`) drops every operation synchronously, inside that `drop`.

use subscope::{CloseReason, EndReason};
use subscope_tests::server::drop_connection_future_at;
use subscope_tests::{Client, TestRuntime, per_runtime};

fn dropping_the_connection_future_drops_every_stream_on_the_next_line<R: TestRuntime>() {
    let (after, server, demo) = drop_connection_future_at::<R, _>(3, |addr| {
        let mut c = Client::modern(addr);
        c.init(None);
        for id in ["a", "b", "c"] {
            c.subscribe(id, "subscription { delayed(ms: 60000) }");
        }
        c
    });
    assert_eq!(after, 0, "children outlived the connection future");
    let e = demo.recorder.events();
    assert_eq!(e.completes.len(), 3);
    assert!(
        e.completes.iter().all(|(_, _, r)| *r == EndReason::Dropped),
        "{e:?}"
    );
    assert_eq!(e.closes.len(), 1);
    assert_eq!(e.closes[0].1, CloseReason::Dropped);
    assert_eq!(e.disconnects.len(), 1, "it had been acknowledged");
    let g = demo.gauges.snapshot();
    assert_eq!((g.connections, g.operations), (0, 0));
    assert_eq!(server.live_tasks(), 0);
}

per_runtime!(dropping_the_connection_future_drops_every_stream_on_the_next_line);
