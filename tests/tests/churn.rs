//! Thousands of connect / subscribe / vanish cycles mixing every ending, bounded in count
//! and time; afterwards every guard and gauge is back at its baseline.

use std::time::Duration;

use subscope::Config;
use subscope_tests::churn::run_cycles;
use subscope_tests::{TestRuntime, per_runtime};

const CYCLES: usize = 2000;
const TIME_BOUND: Duration = Duration::from_secs(90);

fn churn_leaves_nothing_behind<R: TestRuntime>() {
    let s = R::start(Config::default());
    let ran = run_cycles(s.addr, CYCLES, TIME_BOUND);
    assert!(ran >= 200, "only {ran} cycles ran within {TIME_BOUND:?}");
    let e = s.recorder.wait_closes(ran, Duration::from_secs(20));
    s.wait_idle();
    let g = s.gauges.snapshot();
    assert_eq!((g.connections, g.subscriptions, s.live.get()), (0, 0, 0));
    assert_eq!(g.connections_total, ran as u64);
    assert_eq!(e.closes.len(), ran, "one on_close per connection");
    // Every accepted operation completed exactly once.
    let e = s.recorder.events();
    assert_eq!(e.completes.len() as u64, g.operations_total);
    let mut keys: Vec<_> = e
        .completes
        .iter()
        .map(|(c, id, _)| (*c, id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        e.completes.len(),
        "an operation completed twice"
    );
    eprintln!(
        "{}: {ran} cycles, {} operations",
        R::NAME,
        g.operations_total
    );
}

per_runtime!(churn_leaves_nothing_behind);
