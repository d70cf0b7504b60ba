use super::*;
use crate::fixtures::region;
use serde_json::json;

fn build() -> (EdgeRegion, DaemonSet, Service, ConfigMap) {
    let mut r = region("porto", "porto");
    r.spec.agent.tolerations.push(Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("routing".into()),
        effect: Some("NoExecute".into()),
        ..Toleration::default()
    });
    let owner = owner_ref(&r).unwrap();
    let cm = config_map(&r, &owner);
    let env = AgentEnv {
        control_plane_url: "http://cp:8080".into(),
    };
    let ds = daemon_set(&r, &owner, &cm, &env);
    let svc = service(&r, &owner);
    (r, ds, svc, cm)
}

#[test]
fn daemon_set_runs_the_agent_on_the_region_label_with_a_restricted_context() {
    let (_, ds, _, _) = build();
    let json = serde_json::to_value(&ds).unwrap();
    let pod = &json["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"][REGION_LABEL], "porto");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/edgeroute/agent:0.1.0");
    let env = c["env"].as_array().unwrap();
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    for name in [
        "EDGEROUTE_NODE_NAME",
        "EDGEROUTE_API_KEY",
        "EDGEROUTE_ADMIN_KEY",
        "EDGEROUTE_REGION",
        "EDGEROUTE_CONTROL_PLANE_URL",
        "EDGEROUTE_SYNC_TOKEN",
        "EDGEROUTE_DATA_DIR",
    ] {
        assert!(env.iter().any(|e| e["name"] == name), "{name}");
    }
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        pod["volumes"][0]["hostPath"]["path"],
        "/var/lib/edgeroute/porto"
    );
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[0]["key"], EDGE_TAINT);
    assert_eq!(json["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(json["metadata"]["ownerReferences"][0]["kind"], "EdgeRegion");
}

#[test]
fn service_and_config_map_follow_the_region() {
    let (_, ds, svc, cm) = build();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.selector, ds.spec.selector.match_labels);
    assert_eq!(spec.ports.unwrap()[0].port, 5000);
    let data = cm.data.unwrap();
    assert_eq!(data["EDGEROUTE_GRAPH_VERSION"], "v1");
}

#[test]
fn graph_changes_roll_the_pods_through_the_config_hash() {
    let (mut r, ds, _, _) = build();
    r.spec.graph.version = "v2".into();
    let owner = owner_ref(&r).unwrap();
    let cm = config_map(&r, &owner);
    let env = AgentEnv {
        control_plane_url: "http://cp:8080".into(),
    };
    let ds2 = daemon_set(&r, &owner, &cm, &env);
    let hash = |d: &DaemonSet| {
        d.spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
    };
    assert_ne!(hash(&ds), hash(&ds2));
}

#[test]
fn stable_and_canary_daemon_sets_split_the_region_by_the_track_label() {
    let (r, stable, svc, cm) = build();
    let owner = owner_ref(&r).unwrap();
    let env = AgentEnv {
        control_plane_url: "http://cp:8080".into(),
    };
    let canary = agent_daemon_set(&r, &owner, &cm, &env, "0.2.0", Track::Canary);
    let old = agent_daemon_set(&r, &owner, &cm, &env, "0.1.0", Track::Stable);
    assert_eq!(
        old, stable,
        "the stable DaemonSet is the region's DaemonSet"
    );
    let s = serde_json::to_value(&stable).unwrap();
    let c = serde_json::to_value(&canary).unwrap();
    assert_eq!(s["metadata"]["name"], "edgeroute-agent-porto");
    assert_eq!(c["metadata"]["name"], "edgeroute-agent-porto-canary");
    let term = &s["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(
        term["matchExpressions"][0],
        json!({"key": TRACK_LABEL, "operator": "NotIn", "values": [CANARY_TRACK]})
    );
    let cpod = &c["spec"]["template"]["spec"];
    assert_eq!(cpod["nodeSelector"][TRACK_LABEL], CANARY_TRACK);
    assert_eq!(cpod["nodeSelector"][REGION_LABEL], "porto");
    assert!(cpod["affinity"].is_null());
    assert_eq!(
        cpod["containers"][0]["image"],
        "ghcr.io/edgeroute/agent:0.2.0"
    );
    // The selectors do not overlap from the canary's side, and the Service reaches both.
    assert_eq!(
        c["spec"]["selector"]["matchLabels"][TRACK_LABEL],
        CANARY_TRACK
    );
    assert!(s["spec"]["selector"]["matchLabels"][TRACK_LABEL].is_null());
    let service_selector = svc.spec.unwrap().selector.unwrap();
    let canary_pod_labels = canary.spec.template.metadata.unwrap().labels.unwrap();
    assert!(
        service_selector
            .iter()
            .all(|(k, v)| canary_pod_labels.get(k) == Some(v))
    );
    assert_eq!(canary_pod_labels[VERSION_LABEL], "0.2.0");
}

#[test]
fn subset_ignores_server_added_fields_but_not_changed_ones() {
    let desired = json!({"a": 1, "b": {"c": [ {"d": "x"} ]}});
    let observed = json!({"a": 1, "z": 0, "b": {"c": [ {"d": "x", "e": "default"} ]}});
    assert!(is_subset(&desired, &observed));
    assert!(!is_subset(&json!({"a": 2}), &observed));
    assert!(!is_subset(&json!({"b": {"c": []}}), &observed));
    assert!(!is_subset(&json!({"missing": null}), &observed));
}

#[test]
fn probes_use_the_probe_listener_the_service_does_not_expose() {
    let (_, ds, svc, cm) = build();
    let pod = ds.spec.template.spec.unwrap();
    let agent = &pod.containers[0];
    let ports = agent.ports.clone().unwrap();
    let probes = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("probes"))
        .unwrap();
    assert_eq!(probes.container_port, 5001);
    assert_eq!(
        cm.data.unwrap()["EDGEROUTE_PROBE_LISTEN"],
        format!("0.0.0.0:{}", probes.container_port)
    );
    for probe in [&agent.liveness_probe, &agent.readiness_probe] {
        let get = probe.clone().unwrap().http_get.unwrap();
        assert_eq!(get.port, IntOrString::String("probes".into()));
    }
    let service_ports = svc.spec.unwrap().ports.unwrap();
    assert!(service_ports.iter().all(|p| p.port != 5001));
    assert_eq!(probe_port(65_535), 65_534);
}
