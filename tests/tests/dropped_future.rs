//! The connection future dropped from outside (server abort, runtime shutdown, a
//! caller's `select!`) drops every operation synchronously, inside that `drop`.

use std::sync::mpsc;
use std::time::Duration;

use subscope::rt::Timer;
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::server::demo_server;
use subscope_tests::{Client, TestRuntime, per_runtime};

fn dropping_the_connection_future_drops_every_stream_on_the_next_line<R: TestRuntime>() {
    let (rt, guard) = R::runtime();
    let (server, demo) = demo_server(rt.clone(), Config::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut c = Client::modern(addr);
        c.init(None);
        for id in ["a", "b", "c"] {
            c.subscribe(id, "subscription { delayed(ms: 60000) }");
        }
        // Keep the socket open until the test is done.
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
    });
    let (tcp, peer) = listener.accept().expect("accept");
    let live = demo.live.clone();
    R::block_on(&guard, async {
        let mut conn = Box::pin(server.serve_io(R::adopt(tcp), Some(peer)));
        let ended = async {
            let _ = (&mut conn).await;
            false
        };
        let three_live = async {
            while live.get() < 3 {
                rt.sleep(Duration::from_millis(5)).await;
            }
            true
        };
        let deadline = async {
            rt.sleep(Duration::from_secs(10)).await;
            false
        };
        let reached =
            futures_lite::future::or(ended, futures_lite::future::or(three_live, deadline)).await;
        assert!(
            reached,
            "3 live streams never showed up, or the connection ended by itself"
        );
        assert_eq!(live.get(), 3);
        drop(conn);
        // The very next line: nothing was given a chance to run in between.
        assert_eq!(live.get(), 0, "children outlived the connection future");
    });
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
    assert_eq!((g.connections, g.subscriptions), (0, 0));
    assert_eq!(server.live_tasks(), 0);
    let _ = done_tx.send(());
    client.join().expect("client thread");
}

per_runtime!(dropping_the_connection_future_drops_every_stream_on_the_next_line);
