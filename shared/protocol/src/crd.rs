//! The `EdgeRegion` custom resource (`edgeroute.io/v1alpha1`).
//!
//! An operator describes a region (which nodes serve it, which agent runs there, which graph
//! it routes on, how rollouts proceed); the controller in the control plane labels the nodes
//! and runs the agents. The schema generated from these types is the CRD committed under
//! `manifests/crd.yaml`, so validation bounds and defaults live here as schemars attributes.

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "edgeroute.io";
/// Label the controller puts on the nodes it assigns to a region; its value is the region name.
pub const REGION_LABEL: &str = "edgeroute.io/region";
/// Annotation marking a [`REGION_LABEL`] as set by the controller (value: the region name), so
/// the controller never removes a label an operator set by hand.
pub const MANAGED_ANNOTATION: &str = "edgeroute.io/managed-region";
/// Taint key edge nodes carry; agents tolerate it by default.
pub const EDGE_TAINT: &str = "node-role.kubernetes.io/edge";
/// Label the controller puts on a region's canary nodes during an agent rollout (value
/// [`CANARY_TRACK`]); the canary DaemonSet runs there and the stable one does not.
pub const TRACK_LABEL: &str = "edgeroute.io/track";
/// Value of [`TRACK_LABEL`] on canary nodes.
pub const CANARY_TRACK: &str = "canary";
/// Annotation through which an operator (or the center's `rollout` CLI) commands the
/// region's agent rollout: `promote`, `abort`, `pause` or `resume`, optionally followed by
/// `:` and a nonce so the same command can be given twice. The controller acts once per
/// distinct value and records it in `status.rolloutActionAck`.
pub const ROLLOUT_ACTION_ANNOTATION: &str = "edgeroute.io/rollout-action";

/// Desired state of an edge region.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "edgeroute.io",
    version = "v1alpha1",
    kind = "EdgeRegion",
    plural = "edgeregions",
    singular = "edgeregion",
    shortname = "er",
    category = "edgeroute",
    namespaced,
    status = "EdgeRegionStatus",
    derive = "PartialEq",
    doc = "A region of edge nodes that run edgeroute agents on one road graph",
    // Raw JSON columns: the structured `printcolumn(...)` form repeats `type_ = ...`, which
    // clippy's duplicated_attributes lint rejects.
    printcolumn = r#"{"name":"Nodes","type":"integer","description":"nodes labelled for this region","jsonPath":".status.matchedNodes"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","description":"agents that pass their readiness probe","jsonPath":".status.readyAgents"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"agent version fully rolled out","jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"Rollout","type":"string","description":"phase of the current or last agent rollout","jsonPath":".status.rollout.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"integer","description":"share of nodes, in percent, on the new version","jsonPath":".status.rollout.stepPercent"}"#,
    printcolumn = r#"{"name":"Verdict","type":"string","description":"last verdict of the canary analysis","jsonPath":".status.rollout.lastVerdict.kind"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeRegionSpec {
    /// Nodes that serve this region (matchLabels and matchExpressions over Node labels).
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "has(self.matchLabels) || has(self.matchExpressions)",
            "message": "nodeSelector must not be empty: an empty selector would claim every node"
        },
        {
            "rule": "!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",
            "message": "matchExpressions operators must be In, NotIn, Exists or DoesNotExist"
        }
    ]))]
    pub node_selector: LabelSelector,
    /// The agent the region's nodes run.
    pub agent: AgentSpec,
    /// The road graph the agents route on.
    pub graph: GraphSpec,
    /// How a new agent or graph version is rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Freezes the region: the controller reports status but changes no node or workload.
    #[serde(default)]
    pub paused: bool,
}

/// The agent workload of a region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Container image without tag, e.g. `ghcr.io/edgeroute/agent`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Image tag, which is also the version reported in status.
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
    /// Pull policy of the agent image.
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,
    /// CPU and memory requests and limits of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Port the agent's HTTP API listens on.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Tolerations added to the default toleration of the edge taint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

fn default_port() -> i32 {
    5000
}

/// When the kubelet pulls the agent image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every start.
    Always,
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling of the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The road graph a region routes on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphSpec {
    /// Where the graph comes from (an OSM extract URL or a graph artifact name).
    #[schemars(length(min = 1, max = 2048))]
    pub source: String,
    /// Version of the prepared graph the agents must serve.
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
}

/// Canary rollout policy: how a new agent or graph version reaches the region's nodes and
/// how each step is judged against the stable nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutSpec {
    /// Share of the region's nodes, in percent, that runs the new version at each step.
    #[schemars(
        length(min = 1, max = 20),
        inner(range(min = 1, max = 100)),
        extend("x-kubernetes-validations" = [
            {"rule": "self.isSorted()", "message": "steps must be in ascending order"}
        ])
    )]
    pub steps: Vec<u8>,
    /// How long each step is observed before the next one.
    #[schemars(range(min = 10, max = 86400))]
    pub analysis_window_seconds: u32,
    /// Error rate (0 to 1) above which a step is rolled back.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// p99 latency in milliseconds above which a step is rolled back.
    #[schemars(range(min = 1, max = 600000))]
    pub max_p99_latency_ms: u32,
    /// Requests a step must serve before it can be judged.
    #[schemars(range(min = 0))]
    pub min_requests: u32,
    /// How long a step may stay inconclusive (too few requests, silent canaries) before
    /// the rollout pauses for a human.
    #[schemars(range(min = 10, max = 604800))]
    pub max_inconclusive_seconds: u32,
    /// Graph rollouts: share (0 to 1) of canary route requests re-answered on the previous
    /// graph.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub shadow_sample_rate: f64,
    /// Graph rollouts: relative duration change above which two answers differ materially.
    #[schemars(range(min = 0.0, max = 10.0))]
    pub shadow_duration_tolerance: f64,
    /// Graph rollouts: share (0 to 1) of materially different shadow answers above which a
    /// step fails.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_shadow_diff_rate: f64,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            // The seed's system sent every change to 5% of the nodes first.
            steps: vec![5, 25, 50, 100],
            analysis_window_seconds: 300,
            max_error_rate: 0.01,
            max_p99_latency_ms: 250,
            min_requests: 100,
            max_inconclusive_seconds: 1800,
            shadow_sample_rate: 0.05,
            shadow_duration_tolerance: 0.1,
            max_shadow_diff_rate: 0.02,
        }
    }
}

/// Observed state of an edge region, written by the controller.
///
/// Every field is always serialized (absent values as `null`) so that a JSON merge patch of
/// the whole status also clears what is no longer true.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeRegionStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// Nodes labelled for this region.
    #[serde(default)]
    pub matched_nodes: i32,
    /// Agents passing their readiness probe.
    #[serde(default)]
    pub ready_agents: i32,
    /// Agents the DaemonSet should run.
    #[serde(default)]
    pub desired_agents: i32,
    /// Agent version running on every scheduled node.
    #[serde(default)]
    pub current_version: Option<String>,
    /// Graph version of the last complete rollout.
    #[serde(default)]
    pub graph_version: Option<String>,
    /// Ready, Progressing, Degraded and NodeConflict.
    #[serde(default)]
    pub conditions: Vec<RegionCondition>,
    /// Nodes matched by the selector but held by another region (or labelled by hand).
    #[serde(default)]
    pub conflicting_nodes: Vec<String>,
    /// The current or last agent-version rollout; the controller resumes from it.
    #[serde(default)]
    pub rollout: Option<crate::rollout::RolloutStatus>,
    /// When the controller next asks the center for a verdict on the current step (ms
    /// since the epoch); kept here so a restarted or newly elected controller keeps the
    /// analysis rhythm instead of judging at once.
    #[serde(default)]
    pub rollout_next_analysis_at_ms: Option<u64>,
    /// The last value of the `edgeroute.io/rollout-action` annotation the controller acted
    /// on (or refused); a different value is a new command.
    #[serde(default)]
    pub rollout_action_ack: Option<String>,
}

impl EdgeRegionStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: ConditionType) -> Option<&RegionCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// One status condition of a region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionCondition {
    /// Which aspect of the region this condition describes.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// Whether the condition holds.
    pub status: ConditionStatus,
    /// Machine-readable PascalCase reason.
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Time,
}

/// The condition types of a region.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionType {
    /// Every desired agent is ready.
    Ready,
    /// The DaemonSet is rolling out a change.
    Progressing,
    /// Some agents are unavailable outside a rollout.
    Degraded,
    /// Some matched nodes belong to another region.
    NodeConflict,
    /// The agent rollout is holding (no verdict yet) or paused: it will not move on its own
    /// soon, and if paused it waits for a human to promote, abort or resume it.
    RolloutStalled,
}

/// The tri-state status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::{CustomResourceExt, Resource};

    const SAMPLE: &str = r#"{
        "apiVersion": "edgeroute.io/v1alpha1",
        "kind": "EdgeRegion",
        "metadata": {"name": "porto", "namespace": "edgeroute"},
        "spec": {
            "nodeSelector": {
                "matchLabels": {"topology.kubernetes.io/zone": "porto"},
                "matchExpressions": [{"key": "edge", "operator": "Exists"}]
            },
            "agent": {"image": "ghcr.io/edgeroute/agent", "version": "0.1.0"},
            "graph": {"source": "porto.osm.pbf", "version": "2026-11-01"}
        }
    }"#;

    #[test]
    fn defaults_apply_when_fields_are_omitted() {
        let region: EdgeRegion = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(region.spec.agent.port, 5000);
        assert_eq!(
            region.spec.agent.image_pull_policy,
            ImagePullPolicy::IfNotPresent
        );
        assert_eq!(region.spec.rollout, RolloutSpec::default());
        assert!(!region.spec.paused);
        assert!(region.status.is_none());
    }

    #[test]
    fn spec_and_status_round_trip() {
        let mut region: EdgeRegion = serde_json::from_str(SAMPLE).unwrap();
        region.status = Some(EdgeRegionStatus {
            observed_generation: Some(3),
            matched_nodes: 2,
            ready_agents: 1,
            desired_agents: 2,
            current_version: Some("0.1.0".into()),
            graph_version: None,
            conditions: vec![RegionCondition {
                type_: ConditionType::NodeConflict,
                status: ConditionStatus::True,
                reason: "NodesHeldByOtherRegion".into(),
                message: "edge-3".into(),
                last_transition_time: Time("2026-11-23T10:00:00Z".parse().unwrap()),
            }],
            conflicting_nodes: vec!["edge-3".into()],
            rollout: Some(crate::rollout::RolloutStatus {
                target: crate::rollout::RolloutTarget::Agent,
                from_version: Some("0.1.0".into()),
                to_version: "0.2.0".into(),
                phase: crate::rollout::RolloutPhase::Progressing,
                step: 0,
                step_percent: 5,
                canary_nodes: vec!["edge-1".into()],
                started_at_ms: 1_764_000_000_000,
                step_started_at_ms: 1_764_000_000_000,
                holding_since_ms: None,
                last_verdict: None,
                reason: "new agent version".into(),
                updated_at_ms: 1_764_000_000_000,
            }),
            rollout_next_analysis_at_ms: Some(1_764_000_300_000),
            rollout_action_ack: Some("promote:1".into()),
        });
        let json = serde_json::to_value(&region).unwrap();
        assert_eq!(json["status"]["conditions"][0]["type"], "NodeConflict");
        assert_eq!(json["status"]["conditions"][0]["status"], "True");
        let back: EdgeRegion = serde_json::from_value(json).unwrap();
        assert_eq!(back, region);
    }

    #[test]
    fn unknown_enum_values_are_rejected() {
        let bad = SAMPLE.replace(
            r#""version": "0.1.0""#,
            r#""version": "0.1.0", "imagePullPolicy": "Sometimes""#,
        );
        assert!(serde_json::from_str::<EdgeRegion>(&bad).is_err());
    }

    #[test]
    fn crd_carries_names_bounds_and_defaults() {
        let crd = EdgeRegion::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(EdgeRegion::plural(&()), "edgeregions");
        assert_eq!(crd.spec.names.short_names, Some(vec!["er".to_string()]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let json = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let spec = &json["openAPIV3Schema"]["properties"]["spec"];
        let required = spec["required"].as_array().unwrap();
        for field in ["nodeSelector", "agent", "graph"] {
            assert!(required.iter().any(|r| r == field), "{field} required");
        }
        let steps = &spec["properties"]["rollout"]["properties"]["steps"];
        assert_eq!(steps["items"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(steps["items"]["maximum"].as_f64(), Some(100.0));
        assert!(steps["x-kubernetes-validations"].is_array());
        let selector = &spec["properties"]["nodeSelector"];
        assert_eq!(
            selector["x-kubernetes-validations"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            spec["properties"]["agent"]["properties"]["port"]["default"],
            5000
        );
        let policy = &spec["properties"]["agent"]["properties"]["imagePullPolicy"];
        assert_eq!(policy["enum"].as_array().unwrap().len(), 3);
        let columns = version.additional_printer_columns.as_ref().unwrap();
        let names: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Nodes", "Ready", "Version", "Rollout", "Step", "Verdict", "Age"
            ]
        );
    }
}
