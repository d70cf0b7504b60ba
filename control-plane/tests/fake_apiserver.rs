//! The fake API server the controller tests run against, checked through a kube client: its
//! selectors, writes, conflicts and deletions must behave as a real API server's, or the
//! controller tests prove nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::controller::{CONFIGMAPS, NODES, NS, add_node};
use support::fake_apiserver::FakeApiServer;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::ListParams;

#[tokio::test]
async fn label_selectors_follow_kubernetes_syntax() {
    let server = FakeApiServer::start().await;
    add_node(&server, "a", "porto");
    add_node(&server, "b", "lisbon");
    server.put(
        NODES,
        "",
        json!({"metadata": {"name": "c", "labels": {"edge": "yes"}}}),
    );
    let api = Api::<Node>::all(server.client());
    let names = |sel: &'static str| {
        let api = api.clone();
        async move {
            let mut n: Vec<String> = api
                .list(&ListParams::default().labels(sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|n| n.metadata.name.unwrap())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names("zone=porto").await, ["a"]);
    assert_eq!(names("zone!=porto").await, ["b", "c"]);
    assert_eq!(names("zone in (porto,lisbon)").await, ["a", "b"]);
    assert_eq!(names("zone notin (porto)").await, ["b", "c"]);
    assert_eq!(names("edge").await, ["c"]);
    assert_eq!(names("!zone").await, ["c"]);
}

#[tokio::test]
async fn apply_creates_then_merges_and_noop_writes_keep_the_version() {
    let server = FakeApiServer::start().await;
    let api = Api::<ConfigMap>::namespaced(server.client(), NS);
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": NS}, "data": {"k": "1"}}))
    .unwrap();
    let pp = PatchParams::apply("test").force();
    let created = api.patch("x", &pp, &Patch::Apply(&cm)).await.unwrap();
    let again = api.patch("x", &pp, &Patch::Apply(&cm)).await.unwrap();
    assert_eq!(
        created.metadata.resource_version,
        again.metadata.resource_version
    );
    let rv = created.metadata.resource_version.clone().unwrap();
    let fresh = json!({"metadata": {"resourceVersion": rv}, "data": {"k": "2"}});
    api.patch("x", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .unwrap();
    let stale = json!({"metadata": {"resourceVersion": rv}, "data": {"k": "3"}});
    let conflict = api
        .patch("x", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert!(matches!(conflict, kube::Error::Api(s) if s.is_conflict()));
}

#[tokio::test]
async fn replace_with_a_stale_version_conflicts() {
    let server = FakeApiServer::start().await;
    let api = Api::<Lease>::namespaced(server.client(), NS);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {}})).unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let mut held = created.clone();
    held.spec.as_mut().unwrap().holder_identity = Some("a".into());
    api.replace("l", &PostParams::default(), &held)
        .await
        .unwrap();
    let err = api
        .replace("l", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.is_conflict()));
}

#[tokio::test]
async fn finalizers_delay_deletion_and_owners_collect_dependents() {
    let server = FakeApiServer::start().await;
    server.put(
        CONFIGMAPS,
        NS,
        json!({"metadata": {"name": "owner", "namespace": NS, "finalizers": ["f"]}}),
    );
    let uid = server.object(CONFIGMAPS, NS, "owner").unwrap()["metadata"]["uid"].clone();
    server.put(
        CONFIGMAPS,
        NS,
        json!({"metadata": {"name": "dep", "namespace": NS,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}}),
    );
    let api = Api::<ConfigMap>::namespaced(server.client(), NS);
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    let marked = server.object(CONFIGMAPS, NS, "owner").unwrap();
    assert!(!marked["metadata"]["deletionTimestamp"].is_null());
    assert!(server.object(CONFIGMAPS, NS, "dep").is_some());
    let patch = json!({"metadata": {"finalizers": null}});
    api.patch("owner", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(server.object(CONFIGMAPS, NS, "owner").is_none());
    assert!(server.object(CONFIGMAPS, NS, "dep").is_none());
}
