//! The structured-concurrency scope: child streams owned by the connection future.
//!
//! `Scope` keeps every child inside the value that owns it and polls them itself, so
//! dropping the scope (or the connection future that owns it) drops every child before
//! `drop` returns, on any runtime. Each child has its own waker: a wake-up queues only that
//! child, and `Scope::poll_next` serves the queue round-robin with a poll budget, so one
//! always-ready child cannot starve the others or the connection's reads.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use slab::Slab;

/// What a scope reports about its children.
#[derive(Debug)]
pub(crate) enum ScopeEvent<C: Stream> {
    /// A child yielded an item; it stays in the scope.
    Item(String, C::Item),
    /// A child ended; it has been removed and is handed back so the caller decides how it
    /// is dropped.
    Ended(String, C),
    /// A child panicked while polled; it has been removed and is handed back.
    Panicked(String, C),
}

/// Polls of children per `Scope::poll_next` call before yielding back to the runtime.
const DEFAULT_BUDGET: usize = 64;

/// The default in-task scope. See the module docs.
pub(crate) struct Scope<C> {
    slots: Slab<Slot<C>>,
    index: HashMap<String, usize>,
    ready: Arc<ReadyQueue>,
    next_generation: u64,
    budget: usize,
}

struct Slot<C> {
    key: String,
    generation: u64,
    child: C,
    waker: Waker,
    flag: Arc<ChildWaker>,
}

#[derive(Default)]
struct ReadyQueue {
    state: Mutex<ReadyState>,
}

#[derive(Default)]
struct ReadyState {
    /// (slot, generation) pairs; stale pairs (removed or reused slots) are skipped.
    queue: VecDeque<(usize, u64)>,
    parent: Option<Waker>,
}

struct ChildWaker {
    slot: usize,
    generation: u64,
    /// Set while the child is in the queue, so repeated wakes queue it once.
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for ChildWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // AcqRel: a wake after the poller cleared the flag must queue again.
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let parent = {
            let mut state = self.ready.lock();
            state.queue.push_back((self.slot, self.generation));
            state.parent.clone()
        };
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}

impl ReadyQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadyState> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C> std::fmt::Debug for Scope<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("len", &self.slots.len())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<C> Default for Scope<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Scope<C> {
    /// An empty set with the default poll budget (64).
    pub(crate) fn new() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }

    /// An empty set polling at most `budget` children per `poll_next` call.
    pub(crate) fn with_budget(budget: usize) -> Self {
        Self {
            slots: Slab::new(),
            index: HashMap::new(),
            ready: Arc::default(),
            next_generation: 0,
            budget: budget.max(1),
        }
    }

    fn take_slot(&mut self, slot: usize) -> (String, C) {
        let entry = self.slots.remove(slot);
        self.index.remove(&entry.key);
        (entry.key, entry.child)
    }
}

/// Every child is dropped synchronously by the caller of `remove`/`drain` (it is handed
/// back) or in the set's own `Drop`: subscope's guarantee rests on it.
impl<C: Stream + Unpin + Send> Scope<C> {
    pub(crate) fn insert(&mut self, key: String, child: C) -> Result<(), C> {
        if self.index.contains_key(&key) {
            return Err(child);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        if self.slots.capacity() == 0 {
            // Most connections hold one or two operations: room for one, not the four a
            // first push would reserve (a slot is a few hundred bytes); later growth
            // doubles as usual.
            self.slots.reserve_exact(1);
        }
        let vacant = self.slots.vacant_entry();
        let slot = vacant.key();
        let flag = Arc::new(ChildWaker {
            slot,
            generation,
            queued: AtomicBool::new(false),
            ready: Arc::clone(&self.ready),
        });
        let waker = Waker::from(Arc::clone(&flag));
        vacant.insert(Slot {
            key: key.clone(),
            generation,
            child,
            waker: waker.clone(),
            flag,
        });
        self.index.insert(key, slot);
        // Schedule the first poll.
        waker.wake();
        Ok(())
    }

    #[cfg(feature = "http")]
    /// Wakes whoever polls the set (it was changed from outside).
    pub(crate) fn wake_parent(&self) {
        let parent = self.ready.lock().parent.take();
        if let Some(w) = parent {
            w.wake();
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<C> {
        let slot = self.index.remove(key)?;
        Some(self.slots.remove(slot).child)
    }

    pub(crate) fn drain(&mut self) -> Vec<C> {
        self.index.clear();
        self.ready.lock().queue.clear();
        self.slots.drain().map(|slot| slot.child).collect()
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<ScopeEvent<C>> {
        {
            let mut state = self.ready.lock();
            match &state.parent {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.parent = Some(cx.waker().clone()),
            }
        }
        for _ in 0..self.budget {
            let Some((slot, generation)) = self.ready.lock().queue.pop_front() else {
                return Poll::Pending;
            };
            let Some(entry) = self.slots.get_mut(slot) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            // Clear before polling so a wake during the poll queues the child again.
            entry.flag.queued.store(false, Ordering::Release);
            let waker = entry.waker.clone();
            let mut child_cx = Context::from_waker(&waker);
            let child = &mut entry.child;
            let polled = catch_unwind(AssertUnwindSafe(|| {
                Pin::new(child).poll_next(&mut child_cx)
            }));
            match polled {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(Some(item))) => {
                    // It may be ready again without waking: poll it after the others.
                    waker.wake_by_ref();
                    let key = entry.key.clone();
                    return Poll::Ready(ScopeEvent::Item(key, item));
                }
                Ok(Poll::Ready(None)) => {
                    let (key, child) = self.take_slot(slot);
                    return Poll::Ready(ScopeEvent::Ended(key, child));
                }
                Err(_panic) => {
                    let (key, child) = self.take_slot(slot);
                    return Poll::Ready(ScopeEvent::Panicked(key, child));
                }
            }
        }
        // Budget spent with work possibly left: yield, but make sure we are polled again.
        if !self.ready.lock().queue.is_empty() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Whether no child is owned.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::stream;
    use std::sync::atomic::AtomicUsize;

    struct Probe(Arc<AtomicUsize>);
    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    type Boxed = Pin<Box<dyn Stream<Item = u32> + Send>>;

    fn probed(live: &Arc<AtomicUsize>, s: impl Stream<Item = u32> + Send + 'static) -> Boxed {
        live.fetch_add(1, Ordering::SeqCst);
        let probe = Probe(Arc::clone(live));
        Box::pin(futures_lite::StreamExt::map(s, move |x| {
            let _ = &probe;
            x
        }))
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn drop_drops_every_child_on_the_next_line() {
        let live = Arc::new(AtomicUsize::new(0));
        let mut set: Scope<Boxed> = Scope::new();
        for i in 0..100 {
            let _ = set.insert(i.to_string(), probed(&live, stream::pending()));
        }
        assert!(set.poll_next(&mut noop_cx()).is_pending());
        assert_eq!(live.load(Ordering::SeqCst), 100);
        drop(set);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn duplicate_key_is_refused_and_remove_drops_at_once() {
        let live = Arc::new(AtomicUsize::new(0));
        let mut set: Scope<Boxed> = Scope::new();
        assert!(
            set.insert("a".into(), probed(&live, stream::pending()))
                .is_ok()
        );
        let dup = set.insert("a".into(), probed(&live, stream::pending()));
        assert!(dup.is_err());
        drop(dup);
        assert_eq!(live.load(Ordering::SeqCst), 1);
        drop(set.remove("a"));
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert!(set.is_empty());
    }

    #[test]
    fn always_ready_children_are_served_round_robin() {
        let mut set: Scope<Boxed> = Scope::new();
        for i in 0..3u32 {
            let _ = set.insert(i.to_string(), Box::pin(stream::repeat(i)));
        }
        let mut seen = Vec::new();
        for _ in 0..9 {
            match set.poll_next(&mut noop_cx()) {
                Poll::Ready(ScopeEvent::Item(_, v)) => seen.push(v),
                _ => panic!("expected an item"),
            }
        }
        assert_eq!(seen, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_panicking_child_is_removed_and_others_continue() {
        let mut set: Scope<Boxed> = Scope::new();
        let _ = set.insert(
            "bad".into(),
            Box::pin(stream::poll_fn(|_| -> Poll<Option<u32>> { panic!("boom") })),
        );
        let _ = set.insert("good".into(), Box::pin(stream::iter([7u32])));
        let mut events = Vec::new();
        for _ in 0..3 {
            if let Poll::Ready(ev) = set.poll_next(&mut noop_cx()) {
                events.push(match ev {
                    ScopeEvent::Item(k, v) => format!("item {k} {v}"),
                    ScopeEvent::Ended(k, _) => format!("ended {k}"),
                    ScopeEvent::Panicked(k, _) => format!("panicked {k}"),
                });
            }
        }
        assert_eq!(events, ["panicked bad", "item good 7", "ended good"]);
        assert!(set.is_empty());
    }

    #[test]
    fn budget_yields_with_a_self_wake() {
        let mut set: Scope<Boxed> = Scope::with_budget(2);
        for i in 0..4u32 {
            let _ = set.insert(i.to_string(), Box::pin(stream::pending()));
        }
        // Four queued pending children, budget two: Pending now, the rest on the next call.
        assert!(set.poll_next(&mut noop_cx()).is_pending());
        assert_eq!(set.ready.lock().queue.len(), 2);
        assert!(set.poll_next(&mut noop_cx()).is_pending());
        assert!(set.ready.lock().queue.is_empty());
    }
}
