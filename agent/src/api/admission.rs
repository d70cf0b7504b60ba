//! Admission control: under overload, answer what fits within a bounded queue and refuse the
//! rest at once with 503 and `Retry-After`, instead of letting every request wait.
//!
//! Why the concurrency limit alone never shed: most routing requests run inline on a runtime
//! worker and hold their permit only while being computed, so at most one permit per worker
//! thread is ever taken; the queue forms *before* the request is read (unread bytes in socket
//! buffers, connection tasks waiting for a worker), where no permit counts it. So the gate
//! looks at two signals:
//! - **queue delay** ([`QueueDelay`]): how long connections that have a request wait for a
//!   runtime worker, as the server's connection tasks measure it
//!   ([`edgeroute_server::queue_delay`]) while several are waiting. Every request arriving
//!   now waits about this long before it is even read, so above `--max-queue-delay-ms`
//!   (5 ms) new requests are refused before any work (reason `queue_delay`);
//! - **runtime lag**: how late a probe task wakes up ([`LagProbe`]), or how overdue it is: a
//!   stalled runtime (a blocking call on a worker) shows at once. It reads far less than
//!   the queue under load (tokio runs a timer-woken task ahead of the connections woken
//!   with it: under 10 ms while requests waited 27 ms at 500 busy connections), so it is a
//!   backstop: above `--max-runtime-lag-ms` (50 ms) requests are refused (reason
//!   `runtime_lag`). There is also the **standing queue** check (`--standing-lag-ms`, off
//!   by default), CoDel's idea applied to the probe's lag: once every wake-up for
//!   [`STANDING_AFTER`] was later than the target, the queue is not a burst that drains by
//!   itself, and requests are refused while the lag exceeds the target, until it has
//!   stayed within it for [`CALM_AFTER`] (same reason). A burst shorter than that is
//!   served, not refused;
//! - **slots** ([`Gate`]): at most `--concurrency-limit` requests past the gate at once (this
//!   bounds the blocking pool too, since handlers that `spawn_blocking` hold their slot until
//!   the work ends), at most `--admission-queue` waiting for one, each for at most
//!   `--admission-max-wait-ms` (reasons `queue_full`, `queue_timeout`).
//!
//! `POST /optimize` has its own queue ([`Admission::solves`]): solves run up to
//! `--max-concurrent-solves` at once and at most `--solve-queue` wait; beyond, 503 at once.
//! Health, readiness, metrics and admin requests are never shed.
//!
//! Tables, trips and long routes then wait for the compute pool ([`crate::compute`]), whose
//! queue is bounded too (reason `compute_queue_full`).
//!
//! All of this sees a request only once it is read. Under a flood of new connections the
//! waiting happens before: in the listen backlog and in connections not yet served. So new
//! connections are refused at accept time too ([`AcceptShed`]): beyond
//! `--shed-connections-above` open connections, or (if asked for) while the runtime lags
//! beyond `--shed-connections-lag-ms`, a new connection gets an immediate 503 and is closed
//! (reasons `connection_limit`, `accept_runtime_lag`).
//! Probes that must never queue behind such a flood go to `--probe-listen`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use edgeroute_server::queue_delay::QueueDelay;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was refused. The label values of `edgeroute_agent_http_shed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue was full.
    QueueFull,
    /// No slot freed within the longest queue wait.
    QueueTimeout,
    /// Requests already wait too long for a runtime worker.
    QueueDelay,
    /// The runtime is stalled or far behind (the lag probe).
    RuntimeLag,
    /// Every compute thread is busy and the compute queue is full.
    ComputeQueueFull,
    /// A new connection beyond `--shed-connections-above` open ones.
    ConnectionLimit,
    /// A new connection while the runtime lags.
    AcceptRuntimeLag,
}

impl Shed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
            Self::QueueDelay => "queue_delay",
            Self::RuntimeLag => "runtime_lag",
            Self::ComputeQueueFull => "compute_queue_full",
            Self::ConnectionLimit => "connection_limit",
            Self::AcceptRuntimeLag => "accept_runtime_lag",
        }
    }
}

/// A bounded set of slots with a bounded queue in front.
#[derive(Debug)]
pub struct Gate {
    slots: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
    max_queue: usize,
    max_wait: Option<Duration>,
    queue_gauge: Gauge,
    running_gauge: Gauge,
}

/// A slot of a [`Gate`], held until dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.dec();
    }
}

/// One place in a gate's queue, given back when dropped (also when the waiting request is
/// cancelled).
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.queue_gauge.dec();
    }
}

impl Gate {
    /// `size` slots (at least 1), `max_queue` waiting at most, each for at most `max_wait`
    /// (`None`: until a slot frees or the request is cancelled). The gauges report the queue
    /// depth and the slots taken.
    pub fn new(
        size: usize,
        max_queue: usize,
        max_wait: Option<Duration>,
        queue_gauge: Gauge,
        running_gauge: Gauge,
    ) -> Self {
        let size = size.max(1);
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size,
            waiting: AtomicUsize::new(0),
            max_queue,
            max_wait,
            queue_gauge,
            running_gauge,
        }
    }

    /// Slots of this gate.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A slot if one is free now; the first step of [`Gate::enter`], for callers that can
    /// skip the wait's setup when it succeeds.
    pub fn try_enter(&self) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(self.slot(permit))
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        self.running_gauge.inc();
        Slot {
            _permit: permit,
            running: self.running_gauge.clone(),
        }
    }

    /// A slot: at once if one is free, after waiting in the queue otherwise; `Err` at once
    /// when the queue is full, or once the wait is over.
    pub async fn enter(&self) -> Result<Slot, Shed> {
        if let Some(slot) = self.try_enter() {
            return Ok(slot);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::QueueFull);
        }
        self.queue_gauge.inc();
        let _place = Waiting(self);
        let acquire = self.slots.clone().acquire_owned();
        let permit = match self.max_wait {
            Some(wait) => tokio::time::timeout(wait, acquire)
                .await
                .map_err(|_| Shed::QueueTimeout)?,
            None => acquire.await,
        };
        // The semaphore is never closed.
        permit
            .map(|permit| self.slot(permit))
            .map_err(|_| Shed::QueueFull)
    }
}

/// How late the runtime's workers pick up a task that is ready: a probe sleeps a short tick
/// again and again and records how late it wakes.
#[derive(Debug)]
pub struct LagProbe {
    base: Instant,
    /// Lateness of the last wake-up, in microseconds.
    last_lag_us: AtomicU64,
    /// When the probe should wake next, in microseconds since `base`.
    due_us: AtomicU64,
    standing: Option<Standing>,
}

/// The probe's sleep; also the resolution of the signal.
const TICK: Duration = Duration::from_millis(2);

/// How long every wake-up must have been late beyond the standing-lag target before the
/// queue counts as standing. CoDel's interval: longer than a burst of arrivals takes to
/// drain, short enough that a sustained overload is refused within a tenth of a second.
pub const STANDING_AFTER: Duration = Duration::from_millis(100);

/// How long the lag must stay within the target before refusals on it stop. Longer than
/// [`STANDING_AFTER`]: while refusing, the lag dips below the target now and then, and
/// leaving at the first dip would let the queue build again for another interval.
pub const CALM_AFTER: Duration = Duration::from_secs(1);

/// Standing-queue detection: a small state machine fed by the probe's wake-ups.
#[derive(Debug)]
struct Standing {
    target_us: u64,
    /// Since when (µs since the probe's base) every wake-up has been late beyond the
    /// target; `u64::MAX`: the last one was not.
    above_since_us: AtomicU64,
    /// Since when every wake-up has been within the target; `u64::MAX`: the last was not.
    below_since_us: AtomicU64,
    refusing: AtomicBool,
}

impl Standing {
    fn new(target: Duration) -> Self {
        Self {
            target_us: u64::try_from(target.as_micros()).unwrap_or(u64::MAX),
            above_since_us: AtomicU64::new(u64::MAX),
            below_since_us: AtomicU64::new(u64::MAX),
            refusing: AtomicBool::new(false),
        }
    }

    /// One wake-up `late_us` late at `now_us`. Only the probe task calls this.
    fn observe(&self, now_us: u64, late_us: u64) {
        let (since, other) = if late_us > self.target_us {
            (&self.above_since_us, &self.below_since_us)
        } else {
            (&self.below_since_us, &self.above_since_us)
        };
        other.store(u64::MAX, Ordering::Relaxed);
        let mut start = since.load(Ordering::Relaxed);
        if start == u64::MAX {
            start = now_us;
            since.store(now_us, Ordering::Relaxed);
        }
        let lasted = Duration::from_micros(now_us.saturating_sub(start));
        if late_us > self.target_us {
            if lasted >= STANDING_AFTER {
                self.refusing.store(true, Ordering::Release);
            }
        } else if lasted >= CALM_AFTER {
            self.refusing.store(false, Ordering::Release);
        }
    }
}

impl Default for LagProbe {
    fn default() -> Self {
        Self::new(None)
    }
}

impl LagProbe {
    /// A probe that also detects a standing queue beyond `standing_target` (`None`: off).
    pub fn new(standing_target: Option<Duration>) -> Self {
        Self {
            base: Instant::now(),
            last_lag_us: AtomicU64::new(0),
            due_us: AtomicU64::new(u64::MAX),
            standing: standing_target.map(Standing::new),
        }
    }

    /// The standing-lag target while a standing queue lasts (see [`STANDING_AFTER`]).
    pub fn standing_target(&self) -> Option<Duration> {
        self.standing
            .as_ref()
            .filter(|s| s.refusing.load(Ordering::Acquire))
            .map(|s| Duration::from_micros(s.target_us))
    }

    fn micros_since_base(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// The probe's loop; runs until the runtime stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            let due = Instant::now() + TICK;
            self.due_us
                .store(self.micros_since_base(due), Ordering::Release);
            tokio::time::sleep_until(due.into()).await;
            // The timer wheel rounds up to the millisecond: that much is not lag.
            let late = Instant::now()
                .saturating_duration_since(due)
                .saturating_sub(Duration::from_millis(1));
            let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            self.last_lag_us.store(late_us, Ordering::Release);
            if let Some(standing) = &self.standing {
                standing.observe(self.micros_since_base(Instant::now()), late_us);
            }
        }
    }

    /// The current lag: the last measured, or how overdue the probe is now if it is late
    /// already (a stalled runtime must show at once, not after the probe finally runs).
    pub fn lag(&self) -> Duration {
        self.lag_at(Instant::now())
    }

    /// [`LagProbe::lag`] as of `now`, for a caller that has read the clock already.
    pub fn lag_at(&self, now: Instant) -> Duration {
        let now = self.micros_since_base(now);
        let overdue = now.saturating_sub(self.due_us.load(Ordering::Acquire));
        let overdue = overdue.saturating_sub(1_000);
        Duration::from_micros(self.last_lag_us.load(Ordering::Acquire).max(overdue))
    }
}

/// The agent's admission control: the request gate, the solve queue and the lag probe.
#[derive(Debug)]
pub struct Admission {
    /// Slots and queue of routing API requests.
    pub requests: Gate,
    /// Slots (solves at once) and queue of `POST /optimize`.
    pub solves: Gate,
    /// Runtime lag measurement (only measures once [`LagProbe::run`] is spawned).
    pub lag: Arc<LagProbe>,
    /// Lag above which requests are refused; `None`: never on lag.
    pub max_lag: Option<Duration>,
    /// Where the server's connections report their waits for a worker
    /// ([`edgeroute_server::ServerLimits::queue_delay`]).
    pub queue_delay: Arc<QueueDelay>,
    /// Queue delay above which requests are refused; `None`: never on it.
    pub max_queue_delay: Option<Duration>,
    /// Where tables, trips and long routes run.
    pub compute: crate::compute::Compute,
}

impl Admission {
    /// Refuse on the queue delay or the lag before anything else, so a refused request costs
    /// almost nothing.
    pub fn check_lag(&self) -> Result<(), Shed> {
        // One clock read for both checks: the clock is a tenth of a percent of a short
        // route's CPU per read.
        let now = Instant::now();
        if self
            .max_queue_delay
            .is_some_and(|max| self.queue_delay.recent_at(now) > max)
        {
            return Err(Shed::QueueDelay);
        }
        let lag = self.lag.lag_at(now);
        let limit = match (self.max_lag, self.lag.standing_target()) {
            (Some(max), Some(target)) => Some(max.min(target)),
            (max, target) => max.or(target),
        };
        match limit {
            Some(limit) if lag > limit => Err(Shed::RuntimeLag),
            _ => Ok(()),
        }
    }
}

/// Refuses new connections at accept time: beyond `max_open` open connections, or while the
/// runtime lags beyond `max_lag`. Counts each refusal in `edgeroute_agent_http_shed_total`.
///
/// Unlike the request gate, a refusal here cannot tell a probe or an admin request from the
/// rest (nothing is read yet), so the lag check is off unless asked for.
#[derive(Debug)]
pub struct AcceptShed {
    /// The lag probe and its limit.
    pub admission: Arc<Admission>,
    /// Where refusals are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Open connections beyond which a new one is refused (`None`: no such limit).
    pub max_open: Option<usize>,
    /// Runtime lag beyond which a new connection is refused (`None`: never on lag).
    pub max_lag: Option<Duration>,
}

impl AcceptShed {
    fn reason(&self, open: usize) -> Option<Shed> {
        if self.max_open.is_some_and(|max| open >= max) {
            return Some(Shed::ConnectionLimit);
        }
        match self.max_lag {
            Some(max) if self.admission.lag.lag() > max => Some(Shed::AcceptRuntimeLag),
            _ => None,
        }
    }
}

impl edgeroute_server::conn::ConnectionShedder for AcceptShed {
    fn refuse(&self, open: usize) -> Option<&'static str> {
        let reason = self.reason(open)?.label();
        self.metrics.overload().shed_for(reason);
        Some(reason)
    }

    fn body(&self) -> String {
        serde_json::json!({
            "code": edgeroute_protocol::osrm::ErrorCode::Overloaded.as_str(),
            "message": "The agent is overloaded; retry shortly",
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_cancelled_waiter_gives_its_place_back() {
        let gate = Gate::new(1, 1, None, Gauge::default(), Gauge::default());
        let held = gate.enter().await.unwrap();
        let waiter = gate.enter();
        tokio::pin!(waiter);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiter.as_mut())
                .await
                .is_err()
        );
        assert_eq!(gate.queued(), 1);
        assert_eq!(gate.enter().await.unwrap_err(), Shed::QueueFull);
        drop(held);
        let _slot = waiter.await.unwrap();
        assert_eq!(gate.queued(), 0);
        let cancelled = tokio::time::timeout(Duration::from_millis(10), gate.enter()).await;
        assert!(cancelled.is_err());
        assert_eq!(gate.queued(), 0, "the cancelled waiter left the queue");
    }

    #[tokio::test]
    async fn a_wait_beyond_the_limit_is_refused() {
        let gate = Gate::new(
            1,
            10,
            Some(Duration::from_millis(10)),
            Gauge::default(),
            Gauge::default(),
        );
        let _held = gate.enter().await.unwrap();
        assert_eq!(gate.enter().await.unwrap_err(), Shed::QueueTimeout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_stalled_runtime_shows_as_lag() {
        let probe = Arc::new(LagProbe::default());
        tokio::spawn(probe.clone().run());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(probe.lag() < Duration::from_millis(50));
        // Block the only worker: the probe cannot run, and its lateness shows anyway. (The
        // test body itself runs on the main thread, not on the worker.)
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) });
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            probe.lag() >= Duration::from_millis(50),
            "{:?}",
            probe.lag()
        );
    }

    #[test]
    fn a_standing_queue_is_refused_until_the_lag_stays_low_and_a_burst_is_not() {
        let ms = |m: u64| m * 1000;
        let s = Standing::new(Duration::from_millis(2));
        let refusing = || s.refusing.load(Ordering::Acquire);
        // A 90 ms burst of lateness, then calm: never refused.
        for t in (0..90).step_by(3) {
            s.observe(ms(t), ms(5));
        }
        s.observe(ms(92), ms(1));
        assert!(!refusing());
        // Late on every wake-up for 100 ms: a standing queue.
        for t in (100..=200).step_by(2) {
            s.observe(ms(t), ms(4));
        }
        assert!(refusing());
        // While refusing, dips below the target do not end it; a calm second does.
        s.observe(ms(210), ms(1));
        s.observe(ms(700), ms(1));
        s.observe(ms(720), ms(3));
        assert!(refusing(), "a dip followed by lateness keeps refusing");
        for t in (730..=1730).step_by(10) {
            s.observe(ms(t), ms(1));
        }
        assert!(!refusing());
    }
}
