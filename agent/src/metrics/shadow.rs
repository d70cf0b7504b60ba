//! The metrics of a graph canary's shadow comparison (see `routing::shadow`).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels of the shadow graph info metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// The shadow graph's version.
    pub version: String,
}

/// Shadow comparison during a graph canary (see `routing::shadow`).
#[derive(Debug, Default, Clone)]
pub struct ShadowMetrics {
    /// Sampled requests re-answered on the shadow graph.
    pub compared: Counter,
    /// Of those, answers that differ materially.
    pub differ: Counter,
    /// Of those, routes the shadow graph found and the served graph did not.
    pub lost_routes: Counter,
    /// Sampled requests dropped because the comparison queue was full.
    pub dropped: Counter,
    /// The loaded shadow graph (value 1; none while no shadow is loaded).
    pub graph: Family<ShadowLabels, Gauge>,
}

impl ShadowMetrics {
    /// A shadow graph of `version` is loaded.
    pub fn loaded(&self, version: &str) {
        self.graph.clear();
        self.graph
            .get_or_create(&ShadowLabels {
                version: version.to_owned(),
            })
            .set(1);
    }

    /// No shadow graph is loaded.
    pub fn unloaded(&self) {
        self.graph.clear();
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "shadow_compared",
            "Sampled route requests re-answered on the shadow graph during a graph canary",
            self.compared.clone(),
        );
        registry.register(
            "shadow_differ",
            "Shadow answers that differ materially from the served ones (a lost route, or a \
             duration change beyond the tolerance)",
            self.differ.clone(),
        );
        registry.register(
            "shadow_lost_routes",
            "Routes the shadow graph found where the served graph found none",
            self.lost_routes.clone(),
        );
        registry.register(
            "shadow_dropped",
            "Sampled requests not compared because the shadow queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "shadow_graph_info",
            "The shadow graph loaded beside the served one (value 1, version as label)",
            self.graph.clone(),
        );
    }
}
