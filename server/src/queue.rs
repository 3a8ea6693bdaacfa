//! The dynamic-batching queue between HTTP handlers and the render thread.
//!
//! Handlers [`Queue::submit`] requests with their batch key; the render thread takes
//! [`Queue::next_batch`]: the requests sharing the key of the *oldest* queued request, in arrival
//! order, up to the batch size in images, after waiting at most the batch window (counted from
//! that oldest request's arrival) for company. Serving keys in the order of their oldest request
//! is what keeps a busy key from starving a rare one: every key is at most one batch per other
//! key away from the front. The queue holds a bounded number of requests (back-pressure: a full
//! queue refuses at once), and requests whose client has gone are dropped before they render.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often a waiting batch looks for requests whose client has gone.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// Why a request was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity already.
    Full,
    /// The server is shutting down.
    Closed,
}

/// A queued request.
struct Entry<K, T> {
    key: K,
    images: usize,
    arrived: Instant,
    item: T,
}

struct State<K, T> {
    entries: VecDeque<Entry<K, T>>,
    closed: bool,
}

/// A bounded queue of keyed requests (see the module documentation).
pub struct Queue<K, T> {
    state: Mutex<State<K, T>>,
    changed: Condvar,
    capacity: usize,
    batch_size: usize,
    window: Duration,
}

impl<K: PartialEq + Clone, T> Queue<K, T> {
    /// A queue holding at most `capacity` requests, batching up to `batch_size` images, waiting
    /// at most `window` for a batch to fill.
    pub fn new(capacity: usize, batch_size: usize, window: Duration) -> Queue<K, T> {
        Queue {
            state: Mutex::new(State { entries: VecDeque::new(), closed: false }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
            batch_size: batch_size.max(1),
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K, T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` (asking for `images` images) under `key`.
    pub fn submit(&self, key: K, images: usize, item: T) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.entries.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.entries.push_back(Entry { key, images, arrived: Instant::now(), item });
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses further requests; those queued are still handed out, without waiting for company.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The next batch (see the module documentation). Requests `alive` says nobody waits for
    /// any more are dropped whenever the queue is looked at, and handed to `abandoned` (for
    /// counting). Blocks while the queue is empty; `None` once it is closed and empty.
    pub fn next_batch(
        &self,
        alive: impl Fn(&T) -> bool,
        mut abandoned: impl FnMut(Vec<T>),
    ) -> Option<Vec<T>> {
        let mut state = self.lock();
        loop {
            if state.entries.iter().any(|e| !alive(&e.item)) {
                let (kept, gone): (VecDeque<_>, VecDeque<_>) =
                    std::mem::take(&mut state.entries).into_iter().partition(|e| alive(&e.item));
                state.entries = kept;
                abandoned(gone.into_iter().map(|e| e.item).collect());
            }
            let Some(head) = state.entries.front() else {
                if state.closed {
                    return None;
                }
                state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let deadline = head.arrived + self.window;
            let queued: usize = state.entries.iter().filter(|e| e.key == head.key).map(|e| e.images).sum();
            let now = Instant::now();
            if queued < self.batch_size && now < deadline && !state.closed {
                // Woken by a new request, or to look again for requests whose client has gone.
                state = self
                    .changed
                    .wait_timeout(state, (deadline - now).min(LOOK_AGAIN))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            return Some(self.take(&mut state));
        }
    }

    /// Takes the head's key's requests in arrival order while they fit the batch size (the head
    /// always: a request larger than a batch goes alone; the engine splits it).
    fn take(&self, state: &mut State<K, T>) -> Vec<T> {
        let key = state.entries.front().map(|e| e.key.clone());
        let mut images = 0;
        let mut batch = Vec::new();
        let mut rest = VecDeque::with_capacity(state.entries.len());
        for entry in state.entries.drain(..) {
            let fits = batch.is_empty() || images + entry.images <= self.batch_size;
            if Some(&entry.key) == key.as_ref() && fits {
                images += entry.images;
                batch.push(entry.item);
            } else {
                rest.push_back(entry);
            }
        }
        state.entries = rest;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn all(_: &&'static str) -> bool {
        true
    }

    #[test]
    fn a_batch_is_the_oldest_keys_requests_in_arrival_order_up_to_the_batch_size() {
        let queue = Queue::new(16, 3, Duration::ZERO);
        for (key, images, name) in
            [("a", 1, "a1"), ("b", 1, "b1"), ("a", 1, "a2"), ("a", 2, "a3"), ("a", 1, "a4")]
        {
            queue.submit(key, images, name).unwrap();
        }
        // a1 + a2 = 2 images; a3 would make 4 > 3, a4 fits (3): skipping a request that does not
        // fit keeps the batch full without reordering within the key.
        assert_eq!(queue.next_batch(all, drop).unwrap(), ["a1", "a2", "a4"]);
        assert_eq!(queue.next_batch(all, drop).unwrap(), ["b1"]);
        assert_eq!(queue.next_batch(all, drop).unwrap(), ["a3"]);
        queue.close();
        assert!(queue.next_batch(all, drop).is_none());
    }

    #[test]
    fn a_busy_key_does_not_starve_a_rare_one() {
        // Key "hot" is refilled after every batch; "rare" arrives once, behind many hot requests.
        let queue = Queue::new(64, 2, Duration::ZERO);
        for i in 0..6 {
            queue.submit("hot", 1, format!("hot{i}")).unwrap();
        }
        queue.submit("rare", 1, "rare".to_string()).unwrap();
        let mut served = Vec::new();
        for round in 0..8 {
            let batch = queue.next_batch(|_| true, drop).unwrap();
            served.push(batch.clone());
            for i in 0..2 {
                queue.submit("hot", 1, format!("hot-late{round}-{i}")).unwrap();
            }
            if batch == ["rare"] {
                break;
            }
        }
        // Three batches of the six older hot requests, then the rare one: never behind the
        // hot requests that arrived after it.
        assert_eq!(served.len(), 4, "{served:?}");
        assert_eq!(served[3], ["rare"]);
    }

    #[test]
    fn the_window_waits_for_company_and_a_full_batch_goes_at_once() {
        let queue = Arc::new(Queue::new(8, 2, Duration::from_millis(300)));
        queue.submit("k", 1, "first").unwrap();
        let later = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                queue.submit("k", 1, "second").unwrap();
            })
        };
        let started = Instant::now();
        let batch = queue.next_batch(all, drop).unwrap();
        later.join().unwrap();
        assert_eq!(batch, ["first", "second"]);
        assert!(started.elapsed() < Duration::from_millis(300), "a full batch does not wait out the window");
        // Alone, a request waits out the window, then goes.
        queue.submit("k", 1, "alone").unwrap();
        let started = Instant::now();
        assert_eq!(queue.next_batch(all, drop).unwrap(), ["alone"]);
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    }

    #[test]
    fn a_full_queue_refuses_gone_clients_are_dropped_and_a_closed_queue_drains() {
        let queue = Queue::new(2, 4, Duration::ZERO);
        queue.submit("k", 1, "a").unwrap();
        queue.submit("k", 1, "gone").unwrap();
        assert_eq!(queue.submit("k", 1, "c"), Err(Refused::Full));
        let mut dropped = Vec::new();
        let batch = queue.next_batch(|item| *item != "gone", |gone| dropped.extend(gone)).unwrap();
        assert_eq!((batch, dropped), (vec!["a"], vec!["gone"]));
        queue.submit("k", 1, "d").unwrap();
        queue.close();
        assert_eq!(queue.submit("k", 1, "e"), Err(Refused::Closed));
        assert_eq!(queue.next_batch(all, drop).unwrap(), ["d"], "queued work still renders after close");
        assert!(queue.next_batch(all, drop).is_none());
    }
}
