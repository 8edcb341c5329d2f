//! No growth of live heap blocks across churn: after warm-up, hundreds more
//! connect / subscribe / vanish cycles (WebSockets, and SSE streams ending every way) leave
//! the heap where it was, within a small slack.
//!
//! dhat is this binary's global allocator; one profiler per process, so one test here,
//! covering each compiled-in runtime in turn. Run with `--features dhat-heap`.

use std::time::Duration;

use subscope::Config;
use subscope_tests::churn::{run_cycles, run_sse_cycles};
use subscope_tests::{TestRuntime, TestServer};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const WARM_UP: usize = 80;
const CYCLES: usize = 400;
const SSE_WARM_UP: usize = 30;
const SSE_CYCLES: usize = 150;
/// Runtimes keep caches (timer wheels, slabs, thread-locals); they do not grow per cycle.
const SLACK_BLOCKS: usize = 64;

fn settle(s: &TestServer, cycles: usize) {
    s.recorder.wait_closes(cycles, Duration::from_secs(30));
    s.wait_idle();
    s.recorder.clear();
}

fn heap_stays_flat<R: TestRuntime>() -> (usize, usize) {
    let s = R::start(Config::default());
    let warm = run_cycles(s.addr, WARM_UP, Duration::from_secs(60))
        + run_sse_cycles(s.addr, SSE_WARM_UP, Duration::from_secs(60));
    settle(&s, warm);
    let base = dhat::HeapStats::get();
    let ran = run_cycles(s.addr, CYCLES, Duration::from_secs(120));
    assert_eq!(ran, CYCLES, "{}: churn too slow under dhat", R::NAME);
    let streams = run_sse_cycles(s.addr, SSE_CYCLES, Duration::from_secs(120));
    assert_eq!(
        streams,
        SSE_CYCLES,
        "{}: SSE churn too slow under dhat",
        R::NAME
    );
    settle(&s, ran + streams);
    let after = dhat::HeapStats::get();
    eprintln!(
        "{}: live blocks {} -> {} ({} bytes -> {}) over {ran} cycles",
        R::NAME,
        base.curr_blocks,
        after.curr_blocks,
        base.curr_bytes,
        after.curr_bytes
    );
    (base.curr_blocks, after.curr_blocks)
}

#[test]
fn no_heap_growth_over_churn() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut results = Vec::new();
    #[cfg(feature = "rt-tokio")]
    results.push(("tokio", heap_stays_flat::<subscope_tests::server::Tokio>()));
    #[cfg(feature = "rt-smol")]
    results.push(("smol", heap_stays_flat::<subscope_tests::server::Smol>()));
    #[cfg(feature = "rt-async-std")]
    results.push((
        "async-std",
        heap_stays_flat::<subscope_tests::server::AsyncStd>(),
    ));
    for (name, (base, after)) in results {
        dhat::assert!(
            after <= base + SLACK_BLOCKS,
            "{name}: live heap blocks grew from {base} to {after} over {CYCLES} cycles"
        );
    }
}
