//! A clock that moves only when the test says so, and the runtime seam built on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use subscope::rt::{BoxSleep, BoxTask, Sleep, Spawn, Timer};

/// A manual clock: `now` stands still until [`ManualClock::advance`], which wakes every
/// sleep that became due. Also the runtime of the bench: spawned tasks are kept for the
/// bench to poll (the bench hands sockets in itself, so there is no listener).
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<ClockState>>,
}

struct ClockState {
    now: Instant,
    sleepers: Vec<(Instant, Waker)>,
    spawned: Vec<BoxTask>,
}

impl std::fmt::Debug for ClockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockState")
            .field("now", &self.now)
            .field("sleepers", &self.sleepers.len())
            .field("spawned", &self.spawned.len())
            .finish()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at an arbitrary instant.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(ClockState {
                now: Instant::now(),
                sleepers: Vec::new(),
                spawned: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the clock forward and wakes every sleep now due.
    pub fn advance(&self, by: Duration) {
        let due: Vec<Waker> = {
            let mut state = self.lock();
            state.now += by;
            let now = state.now;
            let (due, waiting) = std::mem::take(&mut state.sleepers)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            state.sleepers = waiting;
            due.into_iter().map(|(_, w)| w).collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// Sleeps registered and not yet due (a sleep re-registers each time it is polled).
    pub fn pending_sleeps(&self) -> usize {
        self.lock().sleepers.len()
    }

    /// The earliest deadline a sleep is waiting for.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().sleepers.iter().map(|(at, _)| *at).min()
    }

    /// Takes the tasks spawned so far (the bench polls them).
    pub fn take_spawned(&self) -> Vec<BoxTask> {
        std::mem::take(&mut self.lock().spawned)
    }

    /// Gives back a task that is not finished.
    pub(crate) fn spawn_back(&self, task: BoxTask) {
        self.lock().spawned.push(task);
    }
}

struct ManualSleep {
    clock: ManualClock,
    deadline: Instant,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        if state.now >= self.deadline {
            return Poll::Ready(());
        }
        state.sleepers.push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Sleep for ManualSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        // A waker registered for the old deadline may stay behind; it only causes a
        // spurious poll, which re-registers for the new one.
        self.deadline = deadline;
    }
}

impl Timer for ManualClock {
    fn now(&self) -> Instant {
        self.lock().now
    }

    fn sleep_until(&self, deadline: Instant) -> BoxSleep {
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline,
        })
    }
}

impl Spawn for ManualClock {
    fn spawn(&self, task: BoxTask) {
        self.lock().spawned.push(task);
    }
}
