//! Simulated agents of one region for the rollout tests: they report windows, obey their
//! directives, and live on a hand-moved clock.

#![allow(dead_code)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use edgeroute_control_plane::{
    rollout::{Clock, graph},
    serve::Settings,
    sync::store::GraphMeta,
};
use edgeroute_protocol::{
    crd::RolloutSpec,
    sync::{EndpointCounts, GraphRef, Health, MetricsWindow, Report},
};
use serde_json::{Value, json};

use super::center::TestCenter;

pub const REGION: &str = "monaco";
pub const T0: u64 = 1_764_700_000_000;

pub fn settings(clock: &Clock) -> Settings {
    Settings {
        rollout_policy: RolloutSpec {
            steps: vec![25, 50, 100],
            analysis_window_seconds: 60,
            min_requests: 100,
            max_inconclusive_seconds: 300,
            ..RolloutSpec::default()
        },
        clock: clock.clone(),
        // The fleet view judges states on the system clock; keep every node online.
        stale_after_ms: u64::MAX / 4,
        offline_after_ms: u64::MAX / 2,
        ..Settings::default()
    }
}

/// What a simulated node serves in one report interval.
#[derive(Clone, Copy)]
pub struct Traffic {
    pub requests: u64,
    pub errors: u64,
    pub ms: f64,
}

pub const HEALTHY: Traffic = Traffic {
    requests: 60,
    errors: 0,
    ms: 3.0,
};

/// A region of simulated agents: each reports the graph its last directive named.
pub struct Region {
    pub c: TestCenter,
    pub clock: Clock,
    pub serving: BTreeMap<String, String>,
}

impl Region {
    /// Four nodes on v1, v2 registered.
    pub async fn start() -> Region {
        let clock = Clock::manual(T0);
        let c = TestCenter::new(settings(&clock));
        for v in ["v1", "v2", "v3"] {
            c.center
                .store
                .put_graph(GraphMeta {
                    version: v.into(),
                    sha256: format!("{v:0>64}"),
                    size_bytes: 10,
                    uploaded_at_ms: T0,
                    node_count: 1,
                    bbox: [7.4, 43.7, 7.5, 43.8],
                })
                .await
                .unwrap();
        }
        let (status, body) = c
            .admin_json(
                "PUT",
                "/api/v1/regions/monaco/graph",
                Some(json!({"version": "v1"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut r = Region {
            c,
            clock,
            serving: BTreeMap::new(),
        };
        for i in 1..=4 {
            r.serving.insert(format!("edge-{i}"), "v1".into());
        }
        r.round(|_| Some(HEALTHY)).await;
        r
    }

    /// One report from `node` serving `traffic`; returns the graph its directive names.
    pub async fn report(&mut self, node: &str, traffic: Traffic) -> (String, Option<String>) {
        let mut metrics = MetricsWindow {
            window_ms: 10_000,
            ..MetricsWindow::default()
        };
        metrics.endpoints.insert(
            "route".into(),
            EndpointCounts {
                requests: traffic.requests,
                server_errors: traffic.errors,
                ..EndpointCounts::default()
            },
        );
        for _ in 0..traffic.requests {
            metrics.latency.observe(traffic.ms);
        }
        let graph = self
            .serving
            .get(node)
            .cloned()
            .unwrap_or_else(|| "v1".into());
        let report = Report {
            node: node.into(),
            stream: format!("stream-{node}"),
            region: REGION.into(),
            boot_id: "boot".into(),
            agent_version: "0.1.0".into(),
            profiles: Default::default(),
            graph: Some(GraphRef {
                version: graph,
                sha256: String::new(),
                bbox: None,
            }),
            health: Health {
                ready: true,
                ..Health::default()
            },
            advertise_url: None,
            location: None,
            metrics,
            outbox_depth: 0,
            events: Vec::new(),
        };
        let ack = self.c.ack(&report).await;
        let next = ack.directives.graph.map(|g| g.version).unwrap();
        self.serving.insert(node.into(), next.clone());
        (next, ack.directives.shadow.map(|s| s.graph.version))
    }

    /// Ten seconds: every node reports what `traffic` says (`None`: it stays silent),
    /// then the driver judges what is due.
    pub async fn round(&mut self, traffic: impl Fn(&str) -> Option<Traffic>) {
        self.clock.advance(10_000);
        let nodes: Vec<String> = self.serving.keys().cloned().collect();
        for node in nodes {
            if let Some(t) = traffic(&node) {
                self.report(&node, t).await;
            }
        }
        graph::tick(&self.c.center).await.unwrap();
    }

    pub async fn rollout(&self) -> Value {
        let (status, body) = self
            .c
            .admin_json("GET", "/api/v1/regions/monaco/rollout", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn canaries(&self) -> Vec<String> {
        serde_json::from_value(self.rollout().await["canaryNodes"].clone()).unwrap()
    }

    pub async fn put_graph(&self, version: &str) {
        let (status, body) = self
            .c
            .admin_json(
                "PUT",
                "/api/v1/regions/monaco/graph",
                Some(json!({ "version": version })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Rounds with `traffic` until the phase is one of `phases` (at most `max` rounds).
    pub async fn until(
        &mut self,
        phases: &[&str],
        max: usize,
        traffic: impl Fn(&str, bool) -> Option<Traffic>,
    ) -> Value {
        for _ in 0..max {
            let canaries = self.canaries().await;
            self.round(|n| traffic(n, canaries.iter().any(|c| c == n)))
                .await;
            let r = self.rollout().await;
            if phases.iter().any(|p| r["phase"] == *p) {
                return r;
            }
        }
        panic!("never reached {phases:?}: {}", self.rollout().await);
    }
}
