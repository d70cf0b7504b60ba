//! Which nodes a region labels, releases or cannot have: pure functions over Node objects.
//!
//! A node's claim lives on the node itself (the region label plus the annotation saying the
//! controller set it), so the first region to label a node keeps it until the node stops
//! matching or the region goes away; a second region that also matches only reports the
//! conflict. That is what keeps two overlapping regions from flip-flopping.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeroute_protocol::crd::{EdgeRegion, MANAGED_ANNOTATION, REGION_LABEL};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

/// A label selector the controller cannot evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported selector operator {operator:?} on key {key:?}")]
pub struct SelectorError {
    /// The requirement's key.
    pub key: String,
    /// The operator that is not In, NotIn, Exists or DoesNotExist.
    pub operator: String,
}

/// Whether `labels` satisfy `selector`, with Kubernetes semantics (an empty selector matches
/// everything; `NotIn` and `DoesNotExist` match a missing key).
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    if let Some(required) = &selector.match_labels
        && required.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return Ok(false);
    }
    for req in selector.match_expressions.iter().flatten() {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        let ok = match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => {
                return Err(SelectorError {
                    key: req.key.clone(),
                    operator: other.to_owned(),
                });
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Who holds a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// No region label.
    Free,
    /// Labelled by this controller for the named region.
    Managed(&'a str),
    /// Labelled by someone else (an operator, another tool) for the named region.
    Foreign(&'a str),
}

/// Reads the claim recorded on a node.
pub fn claim_of(node: &Node) -> Claim<'_> {
    match node.labels().get(REGION_LABEL) {
        None => Claim::Free,
        Some(region) if node.annotations().get(MANAGED_ANNOTATION) == Some(region) => {
            Claim::Managed(region)
        }
        Some(region) => Claim::Foreign(region),
    }
}

/// What a region should do to the nodes, and what it then holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// Free matching nodes to label for the region.
    pub to_label: Vec<String>,
    /// Nodes the controller labelled for the region that no longer match.
    pub to_unlabel: Vec<String>,
    /// Matching nodes already labelled for the region.
    pub held: Vec<String>,
    /// Matching nodes labelled for another region.
    pub conflicts: Vec<String>,
}

impl NodePlan {
    /// Nodes the region serves once the plan is carried out.
    pub fn matched(&self) -> usize {
        self.held.len() + self.to_label.len()
    }
}

/// Plans the node labels of `region` given every node of the cluster. Output lists are sorted
/// by node name so status and events are stable across reconciles.
pub fn plan_nodes(
    region: &str,
    selector: &LabelSelector,
    nodes: &[Node],
) -> Result<NodePlan, SelectorError> {
    let mut plan = NodePlan::default();
    for node in nodes {
        let name = node.name_any();
        let matches = selector_matches(selector, node.labels())?;
        match (matches, claim_of(node)) {
            (true, Claim::Free) => plan.to_label.push(name),
            (true, Claim::Managed(r) | Claim::Foreign(r)) if r == region => plan.held.push(name),
            (true, Claim::Managed(_) | Claim::Foreign(_)) => plan.conflicts.push(name),
            // Only labels the controller set are removed; a hand-set label stays.
            (false, Claim::Managed(r)) if r == region => plan.to_unlabel.push(name),
            (false, _) => {}
        }
    }
    for list in [
        &mut plan.to_label,
        &mut plan.to_unlabel,
        &mut plan.held,
        &mut plan.conflicts,
    ] {
        list.sort();
    }
    Ok(plan)
}

/// Nodes the controller labelled for `region`: what its finalizer releases.
pub fn managed_by<'a>(region: &str, nodes: &'a [Node]) -> Vec<&'a Node> {
    nodes
        .iter()
        .filter(|n| claim_of(n) == Claim::Managed(region))
        .collect()
}

/// The regions a node event concerns: those whose selector matches the node (it may have to
/// be labelled, or be a conflict) and the one that holds it (it may have to be released).
pub fn regions_for_node(regions: &[Arc<EdgeRegion>], node: &Node) -> Vec<ObjectRef<EdgeRegion>> {
    let holder = node.labels().get(REGION_LABEL);
    regions
        .iter()
        .filter(|r| {
            holder == Some(&r.name_any())
                // An unevaluable selector is reconciled anyway so the error surfaces there.
                || selector_matches(&r.spec.node_selector, node.labels()).unwrap_or(true)
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{node, region};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    #[test]
    fn selector_semantics_follow_kubernetes() {
        let l = labels(&[("zone", "porto"), ("edge", "true")]);
        assert!(selector_matches(&LabelSelector::default(), &l).unwrap());
        let by_label = LabelSelector {
            match_labels: Some(labels(&[("zone", "porto")])),
            match_expressions: None,
        };
        assert!(selector_matches(&by_label, &l).unwrap());
        assert!(!selector_matches(&by_label, &labels(&[("zone", "lisbon")])).unwrap());
        assert!(selector_matches(&expr("zone", "In", &["porto", "braga"]), &l).unwrap());
        assert!(!selector_matches(&expr("zone", "NotIn", &["porto"]), &l).unwrap());
        assert!(selector_matches(&expr("missing", "NotIn", &["x"]), &l).unwrap());
        assert!(selector_matches(&expr("edge", "Exists", &[]), &l).unwrap());
        assert!(!selector_matches(&expr("edge", "DoesNotExist", &[]), &l).unwrap());
        let err = selector_matches(&expr("edge", "Gt", &["1"]), &l).unwrap_err();
        assert_eq!(err.operator, "Gt");
    }

    #[test]
    fn free_matching_nodes_are_labelled_and_stale_ones_released() {
        let nodes = vec![
            node("a", &[("zone", "porto")], None),
            node("b", &[("zone", "porto")], Some("porto")),
            node("c", &[("zone", "lisbon")], Some("porto")),
            node("d", &[("zone", "lisbon")], None),
        ];
        let plan = plan_nodes(
            "porto",
            &region("porto", "porto").spec.node_selector,
            &nodes,
        )
        .unwrap();
        assert_eq!(plan.to_label, ["a"]);
        assert_eq!(plan.held, ["b"]);
        assert_eq!(plan.to_unlabel, ["c"]);
        assert!(plan.conflicts.is_empty());
        assert_eq!(plan.matched(), 2);
    }

    #[test]
    fn first_claimant_keeps_the_node_and_the_other_reports_a_conflict() {
        // Both regions select zone=porto; `north` labelled the node first.
        let nodes = vec![node("a", &[("zone", "porto")], Some("north"))];
        let north = region("north", "porto");
        let south = region("south", "porto");
        for _ in 0..3 {
            let n = plan_nodes("north", &north.spec.node_selector, &nodes).unwrap();
            let s = plan_nodes("south", &south.spec.node_selector, &nodes).unwrap();
            assert_eq!(n.held, ["a"]);
            assert!(n.to_label.is_empty() && n.to_unlabel.is_empty());
            assert_eq!(s.conflicts, ["a"]);
            assert!(s.to_label.is_empty() && s.to_unlabel.is_empty());
        }
    }

    #[test]
    fn hand_set_labels_are_never_removed_but_block_other_regions() {
        let mut hand = node("h", &[("zone", "lisbon")], None);
        hand.metadata
            .labels
            .get_or_insert_default()
            .insert(REGION_LABEL.into(), "porto".into());
        assert_eq!(claim_of(&hand), Claim::Foreign("porto"));
        let porto = plan_nodes(
            "porto",
            &region("porto", "porto").spec.node_selector,
            &[hand.clone()],
        )
        .unwrap();
        assert_eq!(porto, NodePlan::default());
        let lisbon = plan_nodes(
            "lisbon",
            &region("lisbon", "lisbon").spec.node_selector,
            &[hand],
        )
        .unwrap();
        assert_eq!(lisbon.conflicts, ["h"]);
    }

    #[test]
    fn node_events_map_to_matching_and_holding_regions() {
        let regions = vec![
            Arc::new(region("porto", "porto")),
            Arc::new(region("lisbon", "lisbon")),
            Arc::new(region("braga", "braga")),
        ];
        let moved = node("a", &[("zone", "lisbon")], Some("porto"));
        let mut names: Vec<_> = regions_for_node(&regions, &moved)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["lisbon", "porto"]);
        let managed = managed_by("porto", std::slice::from_ref(&moved));
        assert_eq!(managed.len(), 1);
    }
}
