//! Test fixtures: small EdgeRegions and Nodes for the unit tests of the decision logic.

use std::collections::BTreeMap;

use edgeroute_protocol::crd::{
    AgentSpec, EdgeRegion, EdgeRegionSpec, GraphSpec, ImagePullPolicy, MANAGED_ANNOTATION,
    REGION_LABEL, RolloutSpec,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// A region in namespace `edgeroute` selecting nodes labelled `zone=<zone>`.
pub fn region(name: &str, zone: &str) -> EdgeRegion {
    let mut region = EdgeRegion::new(
        name,
        EdgeRegionSpec {
            node_selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("zone".into(), zone.into())])),
                match_expressions: None,
            },
            agent: AgentSpec {
                image: "ghcr.io/edgeroute/agent".into(),
                version: "0.1.0".into(),
                image_pull_policy: ImagePullPolicy::IfNotPresent,
                resources: None,
                port: 5000,
                tolerations: Vec::new(),
            },
            graph: GraphSpec {
                source: format!("{zone}.osm.pbf"),
                version: "v1".into(),
            },
            rollout: RolloutSpec::default(),
            paused: false,
        },
    );
    region.metadata.namespace = Some("edgeroute".into());
    region.metadata.uid = Some(format!("uid-{name}"));
    region.metadata.generation = Some(1);
    region
}

/// A node with the given labels, labelled by the controller for `managed` if set.
pub fn node(name: &str, labels: &[(&str, &str)], managed: Option<&str>) -> Node {
    let mut labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut annotations = BTreeMap::new();
    if let Some(region) = managed {
        labels.insert(REGION_LABEL.into(), region.into());
        annotations.insert(MANAGED_ANNOTATION.into(), region.into());
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}
