//! Shadow comparison during a graph canary: the center's [`ShadowDirective`] names the
//! graph a canary served before (the "shadow"), and the agent re-answers a sample of its
//! route requests on it to report how often the new graph answers materially differently.
//!
//! Nothing here is on a request's critical path. The handler answers the client on the
//! served graph first, then [`Shadow::offer`]s the request: a lock-free check of whether a
//! shadow is loaded and whether this request falls in the sample, then a `try_send` onto a
//! bounded queue. A full queue drops the sample and counts the drop; the client never waits
//! for the shadow and never sees its errors. One worker ([`Shadow::run`]) drains the queue
//! and computes the shadow answers on the blocking pool, one at a time, so the comparison
//! costs at most one core whatever the request rate.
//!
//! The counts go into the metrics window (`MetricsWindow::shadow`), which a failed report
//! puts back like every other count, and into Prometheus counters.
//!
//! [`ShadowDirective`]: edgeroute_protocol::sync::ShadowDirective

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use arc_swap::ArcSwapOption;
use edgeroute_engine::{Coord, Graph};
use tokio::sync::mpsc;

use crate::{metrics::Metrics, sync::window::WindowRecorder};

/// Samples waiting for the worker when `--shadow-queue` is not given.
pub const DEFAULT_QUEUE: usize = 64;

/// A loaded shadow graph and how to sample and compare against it.
#[derive(Debug)]
pub struct ShadowGraph {
    /// The graph compared against.
    pub graph: Arc<Graph>,
    /// Share (0 to 1) of route requests re-answered on it.
    pub sample_rate: f64,
    /// Relative duration change above which two routes differ materially.
    pub duration_tolerance: f64,
}

impl ShadowGraph {
    /// Its version label.
    pub fn version(&self) -> &str {
        &self.graph.info().version
    }
}

/// What the served graph answered to a sampled request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Served {
    /// A route of this many seconds.
    Route {
        /// Total duration, seconds.
        duration_s: f64,
    },
    /// `NoRoute` or `NoSegment`: no route at all.
    NoRoute,
}

/// How a shadow answer compares with the served one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Both found a route within the tolerance, or neither found one.
    Same,
    /// Both found a route, with durations further apart than the tolerance.
    DurationChanged,
    /// The shadow graph found a route and the served one none.
    LostRoute,
    /// The served graph found a route the shadow graph did not have: not a regression of
    /// the served graph, so not a material difference.
    Gained,
}

impl Comparison {
    /// Whether the difference is material (counted in `differ`).
    pub fn differs(self) -> bool {
        matches!(self, Comparison::DurationChanged | Comparison::LostRoute)
    }
}

/// Compare two outcomes; `shadow` is `None` when the shadow graph had no route.
pub fn compare(served: Served, shadow: Option<f64>, tolerance: f64) -> Comparison {
    match (served, shadow) {
        (Served::NoRoute, Some(_)) => Comparison::LostRoute,
        (Served::NoRoute, None) => Comparison::Same,
        (Served::Route { .. }, None) => Comparison::Gained,
        (Served::Route { duration_s }, Some(old)) => {
            // Relative to the old duration; a floor of one second keeps a route between two
            // snaps on the same road (zero or a few milliseconds) from counting as a change
            // of "infinite" share.
            let change = (duration_s - old).abs() / old.max(1.0);
            if change > tolerance.max(0.0) {
                Comparison::DurationChanged
            } else {
                Comparison::Same
            }
        }
    }
}

/// One sampled request waiting for the worker.
#[derive(Debug)]
pub struct Sample {
    shadow: Arc<ShadowGraph>,
    coords: Vec<Coord>,
    radiuses: Vec<Option<f64>>,
    default_radius_m: f64,
    served: Served,
}

/// What [`Shadow::offer`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// No shadow graph is loaded, or the request is outside the sample.
    NotSampled,
    /// Queued for comparison.
    Queued,
    /// In the sample, but the queue was full: dropped and counted.
    Dropped,
}

/// The shadow graph, the sampling and the comparison queue of one agent.
#[derive(Debug)]
pub struct Shadow {
    current: ArcSwapOption<ShadowGraph>,
    /// Route requests offered while a shadow was loaded: the sampling clock.
    offered: AtomicU64,
    tx: mpsc::Sender<Sample>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Sample>>>,
    window: Arc<WindowRecorder>,
    metrics: Arc<Metrics>,
}

impl Shadow {
    /// A shadow slot with a queue of `capacity` samples (at least one), counting into
    /// `window` and `metrics`.
    pub fn new(capacity: usize, window: Arc<WindowRecorder>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            current: ArcSwapOption::empty(),
            offered: AtomicU64::new(0),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            window,
            metrics,
        }
    }

    /// The loaded shadow graph, if any.
    pub fn current(&self) -> Option<Arc<ShadowGraph>> {
        self.current.load_full()
    }

    /// Whether a shadow graph is loaded (cheap: handlers ask on every request).
    pub fn is_active(&self) -> bool {
        self.current.load().is_some()
    }

    /// Compare against `shadow` from now on, replacing any other shadow graph.
    pub fn load(&self, shadow: ShadowGraph) {
        let version = shadow.version().to_owned();
        self.current.store(Some(Arc::new(shadow)));
        self.metrics.shadow().loaded(&version);
        tracing::info!(%version, "shadow graph loaded");
    }

    /// Stop comparing and let the shadow graph go: its memory is freed once the samples
    /// still queued against it are drained. Returns whether one was loaded.
    pub fn unload(&self) -> bool {
        let old = self.current.swap(None);
        if let Some(old) = &old {
            self.metrics.shadow().unloaded();
            tracing::info!(version = %old.version(), "shadow graph unloaded");
        }
        old.is_some()
    }

    /// Offer an answered route request for comparison: `coords` and `radiuses` as the
    /// client gave them, `served` what the served graph answered. Never blocks.
    pub fn offer(
        &self,
        coords: &[Coord],
        radiuses: &[Option<f64>],
        default_radius_m: f64,
        served: Served,
    ) -> Offer {
        let Some(shadow) = self.current.load_full() else {
            return Offer::NotSampled;
        };
        let n = self.offered.fetch_add(1, Ordering::Relaxed);
        if !in_sample(n, shadow.sample_rate) {
            return Offer::NotSampled;
        }
        let sample = Sample {
            shadow,
            coords: coords.to_vec(),
            radiuses: radiuses.to_vec(),
            default_radius_m,
            served,
        };
        match self.tx.try_send(sample) {
            Ok(()) => Offer::Queued,
            Err(_) => {
                self.metrics.shadow().dropped.inc();
                Offer::Dropped
            }
        }
    }

    /// Drain the queue until `shutdown` resolves. Only the first call gets the queue; a
    /// second returns at once.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            return;
        };
        tokio::pin!(shutdown);
        loop {
            let sample = tokio::select! {
                () = &mut shutdown => return,
                sample = rx.recv() => match sample {
                    Some(sample) => sample,
                    None => return,
                },
            };
            let version = sample.shadow.version().to_owned();
            let outcome = tokio::task::spawn_blocking(move || answer(&sample)).await;
            match outcome {
                Ok(comparison) => self.record(&version, comparison),
                Err(err) => tracing::warn!(error = %err, "shadow comparison failed"),
            }
        }
    }

    fn record(&self, version: &str, comparison: Comparison) {
        self.window.record_shadow(version, comparison);
        let m = self.metrics.shadow();
        m.compared.inc();
        if comparison.differs() {
            m.differ.inc();
        }
        if comparison == Comparison::LostRoute {
            m.lost_routes.inc();
        }
    }
}

/// Whether the `n`th offered request (from 0) is in a sample of `rate`: exactly
/// `floor(n * rate)` of the first `n` are, spread evenly, with no randomness to seed.
fn in_sample(n: u64, rate: f64) -> bool {
    if rate.is_nan() || rate <= 0.0 {
        return false;
    }
    let rate = rate.min(1.0);
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

/// Re-answer a sample on its shadow graph and compare.
fn answer(sample: &Sample) -> Comparison {
    let shadow = &sample.shadow;
    compare(
        sample.served,
        route_duration(
            &shadow.graph,
            &sample.coords,
            &sample.radiuses,
            sample.default_radius_m,
        ),
        shadow.duration_tolerance,
    )
}

/// The duration of the route through `coords` on `graph`, `None` if any coordinate does not
/// snap or any leg has no route (what the API answers with `NoSegment` or `NoRoute`).
pub fn route_duration(
    graph: &Graph,
    coords: &[Coord],
    radiuses: &[Option<f64>],
    default_radius_m: f64,
) -> Option<f64> {
    let snaps = coords
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let radius = radiuses
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(default_radius_m);
            graph.snap(c, radius).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    snaps.windows(2).try_fold(0.0, |total, pair| {
        graph
            .route(&pair[0], &pair[1])
            .ok()
            .map(|r| total + r.duration_s)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_sample_has_the_asked_share_spread_evenly() {
        for rate in [0.0, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, f64::NAN, -1.0] {
            let taken = (0..1000).filter(|&n| in_sample(n, rate)).count();
            let expected = if rate.is_nan() || rate <= 0.0 {
                0
            } else {
                (1000.0 * rate.min(1.0)) as usize
            };
            assert_eq!(taken, expected, "rate {rate}");
        }
        // Evenly: a quarter sample takes one request in every four.
        let gaps: Vec<u64> = (0..40).filter(|&n| in_sample(n, 0.25)).collect();
        assert!(gaps.windows(2).all(|w| w[1] - w[0] == 4), "{gaps:?}");
    }

    #[test]
    fn material_differences_are_lost_routes_and_changes_beyond_the_tolerance() {
        let route = |s| Served::Route { duration_s: s };
        assert_eq!(compare(route(100.0), Some(100.0), 0.1), Comparison::Same);
        assert_eq!(compare(route(109.0), Some(100.0), 0.1), Comparison::Same);
        assert_eq!(
            compare(route(111.0), Some(100.0), 0.1),
            Comparison::DurationChanged
        );
        assert_eq!(
            compare(route(89.0), Some(100.0), 0.1),
            Comparison::DurationChanged
        );
        assert_eq!(
            compare(Served::NoRoute, Some(100.0), 0.1),
            Comparison::LostRoute
        );
        assert_eq!(compare(Served::NoRoute, None, 0.1), Comparison::Same);
        assert_eq!(compare(route(5.0), None, 0.1), Comparison::Gained);
        // Near-zero routes: a few milliseconds either way is no change.
        assert_eq!(compare(route(0.004), Some(0.001), 0.1), Comparison::Same);
        assert!(Comparison::LostRoute.differs() && Comparison::DurationChanged.differs());
        assert!(!Comparison::Gained.differs() && !Comparison::Same.differs());
    }

    /// A square of two-way roads near (0, 0), far from any real map.
    pub(crate) fn square(version: &str) -> Graph {
        use edgeroute_engine::{RoadNetwork, profile::Direction};
        let mut b = RoadNetwork::builder();
        let c = |lon, lat| Coord { lon, lat };
        let n = [
            b.add_node(c(0.000, 0.000)),
            b.add_node(c(0.010, 0.000)),
            b.add_node(c(0.010, 0.010)),
            b.add_node(c(0.000, 0.010)),
        ];
        for i in 0..4 {
            b.add_road(n[i], n[(i + 1) % 4], &[], 36.0, Direction::Both, "side");
        }
        let options = edgeroute_engine::BuildOptions {
            version: version.to_owned(),
            ..Default::default()
        };
        Graph::from_network(b.build().unwrap(), &options).unwrap()
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let window = Arc::new(WindowRecorder::default());
        let metrics = Arc::new(Metrics::new());
        let shadow = Arc::new(Shadow::new(2, window.clone(), metrics.clone()));
        let coords = [
            Coord { lon: 0.0, lat: 0.0 },
            Coord {
                lon: 0.01,
                lat: 0.01,
            },
        ];
        let served = Served::Route { duration_s: 1.0 };
        assert_eq!(shadow.offer(&coords, &[], 100.0, served), Offer::NotSampled);
        shadow.load(ShadowGraph {
            graph: Arc::new(square("old")),
            sample_rate: 1.0,
            duration_tolerance: 0.1,
        });
        // No worker yet: the queue takes two and drops the rest at once.
        let offers: Vec<Offer> = (0..5)
            .map(|_| shadow.offer(&coords, &[], 100.0, served))
            .collect();
        assert_eq!(offers[..2], [Offer::Queued, Offer::Queued]);
        assert!(
            offers[2..].iter().all(|o| *o == Offer::Dropped),
            "{offers:?}"
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("edgeroute_agent_shadow_dropped_total 3"),
            "{text}"
        );
        // The worker then compares the queued two: the shadow's route is two sides of the
        // square (about 2.2 km at 36 km/h, some 220 s), far from the served 1 s.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(shadow.clone().run(async move {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let counts = loop {
            let taken = window.take();
            if let Some(counts) = taken.shadow.clone().filter(|c| c.compared == 2) {
                break counts;
            }
            window.restore(taken);
            assert!(
                std::time::Instant::now() < deadline,
                "samples never compared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert_eq!(counts.against_version, "old");
        assert_eq!((counts.differ, counts.lost_routes), (2, 0));
        assert!(shadow.unload());
        assert!(!shadow.unload());
        assert_eq!(shadow.offer(&coords, &[], 100.0, served), Offer::NotSampled);
        let _ = stop.send(());
        worker.await.unwrap();
    }
}
