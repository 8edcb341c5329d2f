//! A client process for the "client process killed" ending: connects, subscribes, prints
//! `ready`, then waits to be killed.
//!
//! `vanishing_client ADDR PROTOCOL K`

use std::io::Write;
use std::time::Duration;

use subscope_tests::Client;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().and_then(|a| a.parse().ok()).expect("ADDR");
    let protocol = args.next().expect("PROTOCOL");
    let k: usize = args.next().and_then(|k| k.parse().ok()).expect("K");
    let mut c = Client::connect(addr, &[&protocol]);
    c.init(None);
    let legacy = protocol == "graphql-ws";
    for i in 0..k {
        let query = if i % 2 == 0 {
            "subscription { delayed(ms: 60000) }"
        } else {
            "subscription { ticks(everyMs: 100) }"
        };
        let id = i.to_string();
        if legacy {
            c.start(&id, query);
        } else {
            c.subscribe(&id, query);
        }
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    // Stay until killed (bounded, in case nobody does).
    std::thread::sleep(Duration::from_secs(60));
}
