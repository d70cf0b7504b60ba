//! Controller scenarios: the real controller, through a real `kube::Client`, against the
//! in-process fake API server of `support::fake_apiserver`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgeroute_control_plane::controller::FINALIZER;
use edgeroute_protocol::crd::{ConditionStatus, ConditionType, EdgeRegion, REGION_LABEL};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::controller::{
    CONFIGMAPS, DAEMONSETS, EVENTS, LEASES, LeaseTiming, NODES, NS, REGIONS, Replica, SERVICES,
    add_node, child, condition, create_region, is, lease_holder, managed, node, region_json,
    region_of, status,
};
use support::fake_apiserver::FakeApiServer;

const TIMEOUT: Duration = Duration::from_secs(15);
const LEASE: LeaseTiming = LeaseTiming {
    duration: Duration::from_secs(3),
    renew: Duration::from_millis(300),
    retry: Duration::from_millis(200),
};

async fn eventually(what: &str, check: impl FnMut() -> bool) {
    support::controller::eventually(TIMEOUT, what, check).await;
}

/// Makes the regions selecting `node` reconcile without changing anything they care about
/// (an unrelated annotation on the node), and waits until `replica` has reconciled.
async fn touch_and_reconcile(server: &FakeApiServer, replica: &Replica, node: &str) {
    static TOUCHES: AtomicU64 = AtomicU64::new(0);
    let n = TOUCHES.fetch_add(1, Ordering::SeqCst).to_string();
    let before = replica.reconciles();
    server.merge(
        NODES,
        "",
        node,
        json!({"metadata": {"annotations": {"test.edgeroute.io/touch": n}}}),
        false,
    );
    eventually("a reconcile after the touch", || {
        replica.reconciles() > before
    })
    .await;
    // Let the reconciles finish their reads (and any writes they would wrongly make).
    tokio::time::sleep(Duration::from_millis(400)).await;
}

async fn settled(server: &FakeApiServer, region: &str, nodes: i64) {
    eventually("region status settles", || {
        status(server, region).is_some_and(|s| {
            s["matchedNodes"] == nodes
                && s["observedGeneration"]
                    == server.object(REGIONS, NS, region).unwrap()["metadata"]["generation"]
        })
    })
    .await;
}

fn writes(server: &FakeApiServer) -> usize {
    server.writes_except(&["leases"]).len()
}

#[tokio::test]
async fn new_region_labels_its_nodes_and_creates_owned_children_then_goes_quiet() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    add_node(&server, "b", "porto");
    add_node(&server, "c", "lisbon");
    let replica = Replica::start(&server, "one", LEASE, None);
    create_region(&server.client(), "porto", "porto").await;

    eventually("nodes a and b labelled", || {
        region_of(&server, "a").as_deref() == Some("porto")
            && region_of(&server, "b").as_deref() == Some("porto")
    })
    .await;
    assert!(managed(&server, "a"));
    assert_eq!(region_of(&server, "c"), None);
    settled(&server, "porto", 2).await;

    let region = server.object(REGIONS, NS, "porto").unwrap();
    let uid = region["metadata"]["uid"].clone();
    assert_eq!(region["metadata"]["finalizers"], json!([FINALIZER]));
    for resource in [DAEMONSETS, SERVICES, CONFIGMAPS] {
        let obj = child(&server, resource, "porto").unwrap_or_else(|| panic!("{resource}"));
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], uid, "{resource}");
        assert_eq!(owner["controller"], true, "{resource}");
        let managers = obj["metadata"]["managedFields"].as_array().unwrap();
        assert!(
            managers
                .iter()
                .any(|m| m["manager"] == "edgeroute-controller" && m["operation"] == "Apply")
        );
    }
    let ds = child(&server, DAEMONSETS, "porto").unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"][REGION_LABEL], "porto");
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/edgeroute/agent:0.1.0"
    );
    assert_eq!(
        condition(&server, "porto", ConditionType::Ready),
        is(ConditionStatus::False)
    );

    // Reconciling an unchanged region writes nothing.
    let before = writes(&server);
    touch_and_reconcile(&server, &replica, "a").await;
    touch_and_reconcile(&server, &replica, "b").await;
    assert_eq!(
        writes(&server),
        before,
        "unchanged reconcile wrote: {:?}",
        &server.writes_except(&["leases"])[before..]
    );

    // The agents come up: status turns Ready, reports the version and records an Event.
    server.merge(
        DAEMONSETS,
        NS,
        "edgeroute-agent-porto",
        json!({"status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 2,
            "numberMisscheduled": 0, "numberAvailable": 2}}),
        true,
    );
    eventually("region Ready", || {
        condition(&server, "porto", ConditionType::Ready) == is(ConditionStatus::True)
    })
    .await;
    let s = status(&server, "porto").unwrap();
    assert_eq!(s["readyAgents"], 2);
    assert_eq!(s["currentVersion"], "0.1.0");
    eventually("an AgentsReady event", || {
        server
            .objects(EVENTS)
            .iter()
            .any(|e| e["reason"] == "AgentsReady" && e["regarding"]["name"] == "porto")
    })
    .await;
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn nodes_gaining_and_losing_the_matching_label_are_labelled_and_released() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    add_node(&server, "c", "lisbon");
    // Labelled by hand (no managed annotation): the controller must never remove it.
    server.put(
        NODES,
        "",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h",
            "labels": {"zone": "lisbon", REGION_LABEL: "porto"}}}),
    );
    let replica = Replica::start(&server, "one", LEASE, None);
    create_region(&server.client(), "porto", "porto").await;
    eventually("a labelled", || {
        region_of(&server, "a").as_deref() == Some("porto")
    })
    .await;

    server.merge(
        NODES,
        "",
        "c",
        json!({"metadata": {"labels": {"zone": "porto"}}}),
        false,
    );
    eventually("c labelled after gaining the label", || {
        region_of(&server, "c").as_deref() == Some("porto")
    })
    .await;

    server.merge(
        NODES,
        "",
        "a",
        json!({"metadata": {"labels": {"zone": "lisbon"}}}),
        false,
    );
    eventually("a released after losing the label", || {
        region_of(&server, "a").is_none() && !managed(&server, "a")
    })
    .await;
    settled(&server, "porto", 1).await;
    assert_eq!(
        region_of(&server, "h").as_deref(),
        Some("porto"),
        "hand-set label kept"
    );
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn overlapping_regions_keep_the_first_claimant_without_flip_flopping() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    let client = server.client();
    create_region(&client, "north", "porto").await;
    eventually("north claims a", || {
        region_of(&server, "a").as_deref() == Some("north")
    })
    .await;

    create_region(&client, "south", "porto").await;
    eventually("south reports the conflict", || {
        condition(&server, "south", ConditionType::NodeConflict) == is(ConditionStatus::True)
    })
    .await;
    assert_eq!(
        status(&server, "south").unwrap()["conflictingNodes"],
        json!(["a"])
    );
    assert_eq!(
        condition(&server, "north", ConditionType::NodeConflict),
        is(ConditionStatus::False)
    );

    // Several more reconciles of both regions change nothing.
    let before = writes(&server);
    for _ in 0..3 {
        touch_and_reconcile(&server, &replica, "a").await;
    }
    assert_eq!(
        writes(&server),
        before,
        "no writes while the conflict stands"
    );
    assert_eq!(region_of(&server, "a").as_deref(), Some("north"));

    // When the first claimant goes away, the other region takes the node over.
    Api::<EdgeRegion>::namespaced(client, NS)
        .delete("north", &DeleteParams::default())
        .await
        .unwrap();
    eventually("south claims a after north is deleted", || {
        region_of(&server, "a").as_deref() == Some("south")
    })
    .await;
    eventually("south's conflict clears", || {
        condition(&server, "south", ConditionType::NodeConflict) == is(ConditionStatus::False)
    })
    .await;
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn image_change_starts_a_canary_instead_of_updating_every_agent() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    let client = server.client();
    create_region(&client, "porto", "porto").await;
    settled(&server, "porto", 1).await;

    let api = Api::<EdgeRegion>::namespaced(client, NS);
    let patch = json!({"spec": {"agent": {"version": "0.2.0"}}});
    api.patch("porto", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // The new version goes to a canary DaemonSet on a labelled node (docs/rollouts-k8s.md;
    // the whole flow is in tests/controller_rollout.rs); the stable one keeps 0.1.0.
    eventually("canary DaemonSet runs 0.2.0 on a canary node", || {
        server
            .object(DAEMONSETS, NS, "edgeroute-agent-porto-canary")
            .is_some_and(|ds| {
                ds["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "ghcr.io/edgeroute/agent:0.2.0"
            })
            && node(&server, "a")["metadata"]["labels"]["edgeroute.io/track"] == "canary"
    })
    .await;
    eventually("status observes generation 2", || {
        status(&server, "porto").is_some_and(|s| s["observedGeneration"] == 2)
    })
    .await;
    let ds = child(&server, DAEMONSETS, "porto").unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/edgeroute/agent:0.1.0"
    );
    assert_eq!(
        status(&server, "porto").unwrap()["rollout"]["phase"],
        "Progressing"
    );
    assert_eq!(
        condition(&server, "porto", ConditionType::Progressing),
        is(ConditionStatus::True)
    );
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn deleting_a_region_releases_its_nodes_and_collects_its_children() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    add_node(&server, "b", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    let client = server.client();
    create_region(&client, "porto", "porto").await;
    settled(&server, "porto", 2).await;
    assert!(child(&server, DAEMONSETS, "porto").is_some());

    Api::<EdgeRegion>::namespaced(client, NS)
        .delete("porto", &DeleteParams::default())
        .await
        .unwrap();
    eventually("region gone", || {
        server.object(REGIONS, NS, "porto").is_none()
    })
    .await;
    for n in ["a", "b"] {
        assert_eq!(region_of(&server, n), None, "{n} unlabelled");
        assert!(!managed(&server, n), "{n} annotation removed");
    }
    for resource in [DAEMONSETS, SERVICES, CONFIGMAPS] {
        assert!(
            child(&server, resource, "porto").is_none(),
            "{resource} collected"
        );
    }
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn a_paused_region_changes_no_node_or_workload_until_resumed() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    let client = server.client();
    let api = Api::<EdgeRegion>::namespaced(client, NS);
    let mut json = region_json("porto", "porto", "0.1.0");
    json["spec"]["paused"] = json!(true);
    let region: EdgeRegion = serde_json::from_value(json).unwrap();
    api.create(&PostParams::default(), &region).await.unwrap();
    eventually("paused status", || {
        status(&server, "porto").is_some_and(|s| {
            s["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "Paused"))
        })
    })
    .await;
    assert_eq!(region_of(&server, "a"), None);
    assert!(child(&server, DAEMONSETS, "porto").is_none());

    let patch = json!({"spec": {"paused": false}});
    api.patch("porto", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("resumed region labels a and creates its DaemonSet", || {
        region_of(&server, "a").as_deref() == Some("porto")
            && child(&server, DAEMONSETS, "porto").is_some()
    })
    .await;
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn controller_recovers_from_api_errors_and_dropped_watches() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    create_region(&server.client(), "porto", "porto").await;
    settled(&server, "porto", 1).await;

    // The API server fails every request for a while; a node appears meanwhile.
    server.fail_requests(true);
    server.cut_watches();
    add_node(&server, "b", "porto");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.fail_requests(false);
    eventually("b labelled after the outage", || {
        region_of(&server, "b").as_deref() == Some("porto")
    })
    .await;

    // Watches are cut again; changes made afterwards still arrive.
    server.cut_watches();
    add_node(&server, "c", "porto");
    eventually("c labelled after the watch was dropped", || {
        region_of(&server, "c").as_deref() == Some("porto")
    })
    .await;
    settled(&server, "porto", 3).await;
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn reconcile_failures_are_counted_by_error_kind() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    create_region(&server.client(), "porto", "porto").await;
    settled(&server, "porto", 1).await;
    // A node event reaches the controller over the open watch, but its reads then fail.
    server.fail_requests(true);
    add_node(&server, "b", "porto");
    eventually("a failed reconcile is counted", || {
        replica
            .metrics
            .encode()
            .unwrap()
            .contains(r#"edgeroute_controller_reconcile_failures_total{error="kube"}"#)
    })
    .await;
    server.fail_requests(false);
    eventually("b labelled after the errors", || {
        region_of(&server, "b").as_deref() == Some("porto")
    })
    .await;
    replica.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_follower_takes_over() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let first = Replica::start(&server, "first", LEASE, None);
    eventually("first holds the lease", || {
        lease_holder(&server).as_deref() == Some("first")
    })
    .await;
    let second = Replica::start(&server, "second", LEASE, None);
    create_region(&server.client(), "porto", "porto").await;
    settled(&server, "porto", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lease_holder(&server).as_deref(), Some("first"));
    assert_eq!(second.reconciles(), 0, "a follower does not reconcile");

    // The leader dies without releasing the lease; the follower takes over once it expires.
    first.kill();
    add_node(&server, "b", "porto");
    eventually("second holds the lease", || {
        lease_holder(&server).as_deref() == Some("second")
    })
    .await;
    eventually("b labelled by the new leader", || {
        region_of(&server, "b").as_deref() == Some("porto")
    })
    .await;
    assert!(second.reconciles() > 0);
    second.shutdown(TIMEOUT).await;
    // A clean shutdown releases the lease for the next replica.
    assert_eq!(lease_holder(&server), None);
}

#[tokio::test]
async fn losing_the_lease_stops_reconciling() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    let replica = Replica::start(&server, "one", LEASE, None);
    create_region(&server.client(), "porto", "porto").await;
    settled(&server, "porto", 1).await;

    // Another replica grabs the lease (e.g. after a network partition).
    server.merge(
        LEASES,
        NS,
        "edgeroute-controller",
        json!({"spec": {"holderIdentity": "intruder"}}),
        false,
    );
    eventually("leader gauge drops", || replica.metrics.leader.get() == 0).await;
    add_node(&server, "b", "porto");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        region_of(&server, "b"),
        None,
        "no reconcile without the lease"
    );

    // The intruder never renews: the replica takes the lease back and catches up.
    eventually("lease regained", || {
        lease_holder(&server).as_deref() == Some("one")
    })
    .await;
    eventually("b labelled", || {
        region_of(&server, "b").as_deref() == Some("porto")
    })
    .await;
    replica.shutdown(TIMEOUT).await;
}
