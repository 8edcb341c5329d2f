//! The connection future dropped from outside (server abort, runtime shutdown, a
//! caller's `select!`) drops every operation synchronously, inside that `drop`.

#![cfg(feature = "rt-tokio")]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use subscope::tokio::TokioRuntime;
use subscope::{CloseReason, EndReason};
use subscope_tests::{Client, server::parts};

#[test]
fn tokio_dropping_the_connection_future_drops_every_stream_on_the_next_line() {
    let (hooks, live, gauges, broker) = parts();
    let recorder = hooks.recorder.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schema = subscope_examples::build_schema(
        Arc::new(TokioRuntime::new()),
        Arc::clone(&gauges),
        broker,
        live.clone(),
    );
    let server = subscope::tokio::server(schema)
        .hooks(hooks)
        .gauges(Arc::clone(&gauges))
        .build();
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
    tcp.set_nonblocking(true).expect("nonblocking");
    rt.block_on(async {
        let io = subscope::tokio::io(tokio::net::TcpStream::from_std(tcp).expect("tokio stream"));
        let mut conn = Box::pin(server.serve_io(io, Some(peer)));
        let three_live = async {
            while live.get() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = &mut conn => panic!("the connection ended by itself"),
            () = three_live => {}
        }
        assert_eq!(live.get(), 3);
        drop(conn);
        // The very next line: nothing was given a chance to run in between.
        assert_eq!(live.get(), 0, "children outlived the connection future");
    });
    let e = recorder.events();
    assert_eq!(e.completes.len(), 3);
    assert!(
        e.completes.iter().all(|(_, _, r)| *r == EndReason::Dropped),
        "{e:?}"
    );
    assert_eq!(e.closes.len(), 1);
    assert_eq!(e.closes[0].1, CloseReason::Dropped);
    assert_eq!(e.disconnects.len(), 1, "it had been acknowledged");
    let g = gauges.snapshot();
    assert_eq!((g.connections, g.subscriptions), (0, 0));
    assert_eq!(server.live_tasks(), 0);
    let _ = done_tx.send(());
    client.join().expect("client thread");
}
