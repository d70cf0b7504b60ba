//! Sync events as the center's tests send them.

use edgeroute_protocol::{
    plans::{NewPlan, Plan},
    sync::{Event, EventKind},
};
use serde_json::json;

/// Event `seq` of `node`'s stream: a one-job plan numbered `seq` too (id `<node>-<seq>`).
pub fn plan_event(node: &str, seq: u64) -> Event {
    Event {
        seq,
        at_ms: 1,
        kind: EventKind::Plan {
            plan: Box::new(Plan {
                id: format!("{node}-{seq}"),
                seq,
                created_at_ms: 1_764_700_000_000,
                plan: NewPlan {
                    node: node.into(),
                    graph_version: None,
                    graph_checksum: None,
                    solver_version: "test".into(),
                    jobs: 1,
                    shipments: 0,
                    vehicles: 1,
                    output: json!({"code": 0}),
                    traceparent: None,
                },
            }),
        },
    }
}
