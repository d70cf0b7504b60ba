//! The simulated world of the rollout scenarios: agents whose report figures a judge turns
//! into verdicts, and the DaemonSet controller.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use edgeroute_control_plane::controller::judge::{Judge, JudgeError};
use edgeroute_protocol::rollout::{AnalysisRequest, ArmFigures, Verdict, VerdictKind};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::FakeApiServer;
use super::{DAEMONSETS, NODES, NS};

/// How the simulated agents behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// Serves like the stable nodes.
    Healthy,
    /// Answers 8% errors where stable answers 0.5%.
    Erroring,
    /// Answers as often as stable, but with a p99 of 900 ms.
    Slow,
    /// Gets almost no traffic.
    Idle,
    /// Stopped reporting (a partition).
    Partitioned,
}

/// A judge computing verdicts from simulated report figures with a simple rule (the real,
/// statistical analysis lives at the center): silent canaries are Silent, arms below the
/// minimum sample are Inconclusive, a canary error rate above stable's plus the allowed rate
/// fails, anything else passes.
pub struct SimJudge {
    canary: Mutex<Canary>,
    requests: Mutex<Vec<AnalysisRequest>>,
}

impl SimJudge {
    pub fn new(canary: Canary) -> Arc<Self> {
        Arc::new(Self {
            canary: Mutex::new(canary),
            requests: Mutex::new(Vec::new()),
        })
    }

    pub fn set(&self, canary: Canary) {
        *self.canary.lock().unwrap() = canary;
    }

    pub fn requests(&self) -> Vec<AnalysisRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn arm(nodes: u32, reporting: u32, requests_per_node: u64, error_permille: u64) -> ArmFigures {
    let requests = requests_per_node * u64::from(reporting);
    ArmFigures {
        nodes,
        reporting_nodes: reporting,
        requests,
        errors: requests * error_permille / 1000,
        p99_ms: (requests > 0).then_some(40.0),
        shadow_compared: 0,
        shadow_differ: 0,
    }
}

#[async_trait]
impl Judge for SimJudge {
    async fn judge(&self, region: &str, req: &AnalysisRequest) -> Result<Verdict, JudgeError> {
        assert_eq!(region, "porto");
        self.requests.lock().unwrap().push(req.clone());
        let n = u32::try_from(req.canary_nodes.len()).unwrap();
        let behaviour = *self.canary.lock().unwrap();
        let canary = match behaviour {
            Canary::Healthy => arm(n, n, 500, 5),
            Canary::Erroring => arm(n, n, 500, 80),
            Canary::Slow => ArmFigures {
                p99_ms: Some(900.0),
                ..arm(n, n, 500, 5)
            },
            Canary::Idle => arm(n, n, 2, 0),
            Canary::Partitioned => arm(n, 0, 0, 0),
        };
        let stable = arm(8 - n.min(8), 8 - n.min(8), 500, 5);
        let rate = |a: &ArmFigures| a.errors as f64 / a.requests.max(1) as f64;
        let min = u64::from(req.policy.min_requests);
        let (kind, reason) = if canary.reporting_nodes < canary.nodes {
            (
                VerdictKind::Silent,
                "canary nodes stopped reporting".to_owned(),
            )
        } else if canary.requests < min {
            (
                VerdictKind::Inconclusive,
                format!("{} canary requests < {min}", canary.requests),
            )
        } else if rate(&canary) > rate(&stable) + req.policy.max_error_rate {
            (
                VerdictKind::Fail,
                format!(
                    "canary error rate {:.3} vs stable {:.3}",
                    rate(&canary),
                    rate(&stable)
                ),
            )
        } else if canary.p99_ms.unwrap_or(0.0) > f64::from(req.policy.max_p99_latency_ms) {
            (
                VerdictKind::Fail,
                format!(
                    "canary p99 {:?} ms above {} ms",
                    canary.p99_ms, req.policy.max_p99_latency_ms
                ),
            )
        } else {
            (VerdictKind::Pass, "canary within bounds".to_owned())
        };
        Ok(Verdict {
            kind,
            reason,
            at_ms: req.since_ms,
            canary,
            stable,
        })
    }
}

/// Whether a DaemonSet's pods belong on a node, from its nodeSelector and the stable
/// DaemonSet's "not canary" affinity.
pub fn places_on(ds: &Value, node: &Value) -> bool {
    let pod = &ds["spec"]["template"]["spec"];
    let labels = &node["metadata"]["labels"];
    let selected = pod["nodeSelector"]
        .as_object()
        .is_some_and(|sel| sel.iter().all(|(k, v)| &labels[k] == v));
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let affine = terms.as_array().is_none_or(|terms| {
        terms.iter().any(|t| {
            t["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| {
                    let value = labels[e["key"].as_str().unwrap()].as_str();
                    let values: Vec<&str> = e["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    match e["operator"].as_str().unwrap() {
                        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                        "In" => value.is_some_and(|v| values.contains(&v)),
                        other => panic!("unexpected operator {other}"),
                    }
                })
        })
    });
    selected && affine
}

/// Plays the DaemonSet controller: every DaemonSet reports its current template updated
/// and ready on every node it places pods on.
pub fn simulate_daemon_sets(server: &Arc<FakeApiServer>) -> JoinHandle<()> {
    let server = Arc::clone(server);
    tokio::spawn(async move {
        loop {
            let nodes = server.objects(NODES);
            for ds in server.objects(DAEMONSETS) {
                let n = nodes.iter().filter(|node| places_on(&ds, node)).count();
                let status = json!({
                    "observedGeneration": ds["metadata"]["generation"],
                    "desiredNumberScheduled": n, "currentNumberScheduled": n,
                    "updatedNumberScheduled": n, "numberReady": n, "numberAvailable": n,
                    "numberMisscheduled": 0,
                });
                let current = &ds["status"];
                let same = status
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| &current[k] == v);
                if !same {
                    let name = ds["metadata"]["name"].as_str().unwrap().to_owned();
                    // The controller may have deleted it since the list.
                    if server.object(DAEMONSETS, NS, &name).is_some() {
                        server.merge(DAEMONSETS, NS, &name, json!({ "status": status }), true);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}
