//! The plan's `traceparent` is optional both ways: plan events of agents before traces still
//! decode, an untraced plan is sent exactly as before, and a center before traces reads a
//! traced plan event (the field is one it does not know).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeroute_protocol::{
    plans::{NewPlan, Plan},
    sync::{Event, EventKind},
};
use serde_json::json;

fn event(traceparent: Option<&str>) -> Event {
    Event {
        seq: 7,
        at_ms: 1_764_700_000_000,
        kind: EventKind::Plan {
            plan: Box::new(Plan {
                id: "edge-1-3".to_owned(),
                seq: 3,
                created_at_ms: 1_764_700_000_000,
                plan: NewPlan {
                    node: "edge-1".to_owned(),
                    graph_version: Some("monaco-a".to_owned()),
                    graph_checksum: None,
                    solver_version: "edgeroute-engine 0.1.0".to_owned(),
                    jobs: 2,
                    shipments: 0,
                    vehicles: 1,
                    output: json!({"code": 0}),
                    traceparent: traceparent.map(str::to_owned),
                },
            }),
        },
    }
}

#[test]
fn an_old_agents_plan_event_decodes_without_a_traceparent() {
    let mut old = serde_json::to_value(event(None)).unwrap();
    assert!(
        old["plan"].get("traceparent").is_none(),
        "untraced plans send no field"
    );
    old["plan"].as_object_mut().unwrap().remove("traceparent");
    let decoded: Event = serde_json::from_value(old).unwrap();
    assert_eq!(decoded, event(None));
}

#[test]
fn a_traced_plan_event_round_trips_and_old_readers_skip_the_field() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let json = serde_json::to_value(event(Some(tp))).unwrap();
    assert_eq!(json["plan"]["traceparent"], tp);
    let decoded: Event = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(decoded, event(Some(tp)));

    // What a center before traces knows of a plan: the same struct without the field.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldPlan {
        id: String,
        seq: u64,
        created_at_ms: u64,
        node: String,
        graph_version: Option<String>,
        solver_version: String,
        jobs: usize,
        output: serde_json::Value,
    }
    let old: OldPlan = serde_json::from_value(json["plan"].clone()).unwrap();
    assert_eq!(old.seq, 3);
}
