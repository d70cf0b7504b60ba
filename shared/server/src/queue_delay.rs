//! How long connections wait for a runtime worker once they have something to do.
//!
//! Under overload the queue in front of request handling is the runtime's run queue: every
//! connection whose socket became readable waits there for its turn, and nothing in the
//! application counts it. A probe task that sleeps and measures its own lateness does not
//! see it either: tokio runs a task woken by a timer next (its LIFO slot), ahead of the
//! connections woken by the same turn of the driver, so the probe reads a few milliseconds
//! while each connection waits a whole round of the others (27 ms at 500 busy connections
//! on one core). So each connection task is wrapped ([`Stamped`]): its waker notes when it
//! was woken, its next poll how long ago that was, and [`QueueDelay`] keeps a short average
//! of those waits, which is what a request arriving now will wait too.
//!
//! A wait counts only while other connections are queued too ([`MIN_QUEUED`]): a
//! connection that waited behind one long computation or a slow disk write, with nobody
//! else waiting, is no sign of overload, and refusing the next request would not help it.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

/// A sample older than this says nothing about the queue now: the average restarts from the
/// next one (after a burst, the first request of a calm period is not refused for it).
const FRESH: Duration = Duration::from_millis(100);

/// Whether a wait recorded at `at` (`u64::MAX`: none) is too old at `now` (microseconds).
fn stale(now: u64, at: u64) -> bool {
    at == u64::MAX || now.saturating_sub(at) > FRESH.as_micros() as u64
}

/// Connections that must be waiting for a worker besides the one polled for its wait to
/// count; with fewer, a wait counts as none.
pub const MIN_QUEUED: usize = 4;

/// Recent run-queue waits of connection tasks; see the module documentation.
#[derive(Debug)]
pub struct QueueDelay {
    base: Instant,
    /// Average of the recent waits, in microseconds.
    average_us: AtomicU64,
    /// When the last wait was recorded, in microseconds since `base`; `u64::MAX`: never.
    at_us: AtomicU64,
    /// Connections woken and not yet polled.
    queued: AtomicUsize,
}

impl Default for QueueDelay {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueDelay {
    /// No wait recorded yet.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            average_us: AtomicU64::new(0),
            at_us: AtomicU64::new(u64::MAX),
            queued: AtomicUsize::new(0),
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// One connection waited `wait` for a worker, with `queued` others waiting when it got
    /// one.
    pub fn record(&self, wait: Duration, queued: usize) {
        let now = self.micros(Instant::now());
        let wait = if queued >= MIN_QUEUED {
            u64::try_from(wait.as_micros()).unwrap_or(u64::MAX)
        } else {
            0
        };
        let last = self.at_us.swap(now, Ordering::Relaxed);
        // A quarter weight for each new wait: a single unlucky connection moves the average
        // little, a queue that lasts moves it within a few requests. Concurrent updates may
        // lose one another's sample, which a heuristic can afford.
        let average = if stale(now, last) {
            wait
        } else {
            let old = self.average_us.load(Ordering::Relaxed);
            old - old / 4 + wait / 4
        };
        self.average_us.store(average, Ordering::Relaxed);
    }

    /// The recent average wait; zero when no connection was woken within the last 100 ms.
    pub fn recent(&self) -> Duration {
        self.recent_at(Instant::now())
    }

    /// [`QueueDelay::recent`] as of `now`, for a caller that has read the clock already.
    pub fn recent_at(&self, now: Instant) -> Duration {
        let now = self.micros(now);
        if stale(now, self.at_us.load(Ordering::Relaxed)) {
            return Duration::ZERO;
        }
        Duration::from_micros(self.average_us.load(Ordering::Relaxed))
    }
}

/// The waker a [`Stamped`] future hands down: notes when it was first woken since the last
/// poll, then wakes the task.
#[derive(Debug)]
struct Stamp {
    delay: Arc<QueueDelay>,
    /// Microseconds since the delay's base of the first wake since the last poll, plus one;
    /// 0: none; [`CLOSED`]: the future is gone.
    woken_us: AtomicU64,
    task: Mutex<Option<Waker>>,
}

impl Wake for Stamp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let now = u64::try_from(self.delay.base.elapsed().as_micros())
            .unwrap_or(u64::MAX - 2)
            .min(u64::MAX - 2)
            + 1;
        // Only the first wake counts: the task is queued from then on. Counted before the
        // stamp is set, so the poll that clears the stamp always finds it counted.
        self.delay.queued.fetch_add(1, Ordering::AcqRel);
        if self
            .woken_us
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.delay.queued.fetch_sub(1, Ordering::AcqRel);
        }
        let task = match self.task.lock() {
            Ok(task) => task.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// [`Stamp::woken_us`] once its future is dropped: later wakes are not counted.
const CLOSED: u64 = u64::MAX;

/// `F`, recording in a [`QueueDelay`] how long it waited for a worker each time it was woken.
pub struct Stamped<F> {
    inner: Pin<Box<F>>,
    stamp: Arc<Stamp>,
    waker: Waker,
}

impl<F> Stamped<F> {
    /// Wraps `inner`, reporting to `delay`.
    pub fn new(inner: F, delay: Arc<QueueDelay>) -> Self {
        let stamp = Arc::new(Stamp {
            delay,
            woken_us: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(stamp.clone()),
            stamp,
        }
    }
}

impl<F: Future> Future for Stamped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        {
            let mut task = match this.stamp.task.lock() {
                Ok(task) => task,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let woken = this.stamp.woken_us.swap(0, Ordering::AcqRel);
        if woken > 0 && woken != CLOSED {
            let delay = &this.stamp.delay;
            let others = delay
                .queued
                .fetch_sub(1, Ordering::AcqRel)
                .saturating_sub(1);
            let waited = delay
                .base
                .elapsed()
                .saturating_sub(Duration::from_micros(woken - 1));
            delay.record(waited, others);
        }
        let mut inner_cx = Context::from_waker(&this.waker);
        this.inner.as_mut().poll(&mut inner_cx)
    }
}

impl<F> Drop for Stamped<F> {
    fn drop(&mut self) {
        let woken = self.stamp.woken_us.swap(CLOSED, Ordering::AcqRel);
        if woken > 0 && woken != CLOSED {
            self.stamp.delay.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` stamped tasks waiting for `go`, each polled once.
    async fn waiting(
        n: usize,
        delay: &Arc<QueueDelay>,
        go: &Arc<tokio::sync::Notify>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let tasks = (0..n)
            .map(|_| {
                let go = go.clone();
                tokio::spawn(Stamped::new(
                    async move { go.notified().await },
                    delay.clone(),
                ))
            })
            .collect();
        tokio::task::yield_now().await;
        tasks
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tasks_woken_together_behind_a_busy_worker_record_the_wait() {
        let delay = Arc::new(QueueDelay::new());
        let go = Arc::new(tokio::sync::Notify::new());
        let tasks = waiting(8, &delay, &go).await;
        assert_eq!(delay.recent(), Duration::ZERO, "not woken yet");
        // Woken, then kept from the only worker for 40 ms by this task.
        go.notify_waiters();
        std::thread::sleep(Duration::from_millis(40));
        for t in tasks {
            t.await.unwrap();
        }
        // The first four waited 40 ms with others queued behind; the last four count as no
        // wait (the queue drained), which pulls the average down to about 13 ms.
        let recent = delay.recent();
        assert!(
            recent >= Duration::from_millis(10) && recent < Duration::from_millis(1000),
            "{recent:?}"
        );
        assert_eq!(delay.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_that_waited_alone_is_no_queue() {
        let delay = Arc::new(QueueDelay::new());
        let go = Arc::new(tokio::sync::Notify::new());
        let tasks = waiting(1, &delay, &go).await;
        go.notify_waiters();
        std::thread::sleep(Duration::from_millis(40));
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(delay.recent(), Duration::ZERO);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_dropped_while_queued_leaves_no_count_behind() {
        let delay = Arc::new(QueueDelay::new());
        let go = Arc::new(tokio::sync::Notify::new());
        let tasks = waiting(3, &delay, &go).await;
        go.notify_waiters();
        assert_eq!(delay.queued.load(Ordering::Acquire), 3);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        assert_eq!(delay.queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn one_long_wait_moves_the_average_a_quarter_and_a_stale_one_is_forgotten() {
        let delay = QueueDelay::new();
        let q = MIN_QUEUED;
        for _ in 0..20 {
            delay.record(Duration::ZERO, q);
        }
        delay.record(Duration::from_millis(40), q);
        assert_eq!(delay.recent(), Duration::from_millis(10));
        // A lasting queue: the average follows within a few waits.
        for _ in 0..12 {
            delay.record(Duration::from_millis(40), q);
        }
        assert!(
            delay.recent() > Duration::from_millis(38),
            "{:?}",
            delay.recent()
        );
        // Waits with too few others queued count as none.
        for _ in 0..30 {
            delay.record(Duration::from_millis(40), q - 1);
        }
        assert!(
            delay.recent() < Duration::from_millis(1),
            "{:?}",
            delay.recent()
        );
        // Calm for longer than FRESH: nothing recent, and the next wait starts afresh.
        std::thread::sleep(FRESH + Duration::from_millis(20));
        assert_eq!(delay.recent(), Duration::ZERO);
        delay.record(Duration::from_millis(1), q);
        assert_eq!(delay.recent(), Duration::from_millis(1));
    }
}
