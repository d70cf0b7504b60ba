use super::*;
use sha2::{Digest, Sha256};

#[test]
fn activation_keeps_the_previous_version_for_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.activate_graph("v1", "sha", "test"),
        Err(Error::UnknownVersion(_))
    ));
    store.put_graph("v1", b"one").unwrap();
    store.put_graph("v2", b"two").unwrap();
    let p = store.activate_graph("v1", "sha", "test").unwrap();
    assert_eq!(p.active.as_deref(), Some("v1"));
    assert_eq!(p.previous, None);
    let p = store.activate_graph("v2", "sha", "test").unwrap();
    assert_eq!(p.active.as_deref(), Some("v2"));
    assert_eq!(p.previous.as_deref(), Some("v1"));
    // Re-activating the active version changes nothing.
    let p = store.activate_graph("v2", "sha", "test").unwrap();
    assert_eq!(p.previous.as_deref(), Some("v1"));
    assert!(!store.delete_graph("v1").unwrap(), "previous is protected");
    assert_eq!(store.graph_versions().unwrap(), ["v1", "v2"]);
    assert_eq!(store.graph("v2").unwrap().as_deref(), Some(&b"two"[..]));
}

#[test]
fn identity_and_sources_survive_reopen_and_legacy_keys_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = SledStore::open(dir.path()).unwrap();
        // As earlier versions stored keys given on the command line.
        store
            .db
            .open_tree(LEGACY_API_KEYS)
            .unwrap()
            .insert(hex::encode(Sha256::digest(b"secret")), &[])
            .unwrap();
        store.record_graph_source("abc", "v1").unwrap();
        let id = store.boot(None).unwrap();
        store.flush().unwrap();
        id
    };
    let store = SledStore::open(dir.path()).unwrap();
    let again = store.boot(None).unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.boot_count, 2);
    assert!(
        !store
            .db
            .tree_names()
            .contains(&sled::IVec::from(LEGACY_API_KEYS)),
        "stored key hashes are removed at open"
    );
    assert_eq!(
        store.graph_for_source("abc").unwrap().as_deref(),
        Some("v1")
    );
}

#[test]
fn a_database_started_under_another_node_name_gets_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let legacy = store.boot(None).unwrap();
    // A database from before names were kept adopts the first name it is given.
    let named = store.boot(Some("edge-1")).unwrap();
    assert_eq!(
        (named.id.as_str(), named.boot_count),
        (legacy.id.as_str(), 2)
    );
    assert_eq!(
        store.boot(None).unwrap().id,
        legacy.id,
        "no name, no change"
    );
    let copied = store.boot(Some("edge-2")).unwrap();
    assert_ne!(copied.id, legacy.id);
    assert_eq!(
        (copied.boot_count, copied.node.as_deref()),
        (1, Some("edge-2"))
    );
    assert_eq!(store.boot(Some("edge-2")).unwrap().id, copied.id);
}

#[test]
fn identity_is_stored_under_the_key_older_databases_hold() {
    let stored = br#"{"id":"00ff","created_at":1700000000,"boot_count":3}"#;
    let id: NodeIdentity = serde_json::from_slice(stored).unwrap();
    assert_eq!(id.created_at_s, 1_700_000_000);
    assert_eq!(serde_json::to_vec(&id).unwrap(), stored);
}

#[test]
fn plan_sequence_numbers_increase_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_of("abc");
    {
        let store = SledStore::open(dir.path()).unwrap();
        let a = store.put_plan(&plan, None).unwrap();
        let b = store.put_plan(&plan, None).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(b.id, "abc-2");
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let c = store.put_plan(&plan, None).unwrap();
    assert_eq!(c.seq, 3);
    assert_eq!(store.plan(2, Tenant::All).unwrap().unwrap().id, "abc-2");
    assert_eq!(store.plan(9, Tenant::All).unwrap(), None);
    let seqs: Vec<_> = store
        .plans_since(1, 10, Tenant::All)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(store.plans_since(0, 1, Tenant::All).unwrap().len(), 1);
    assert_eq!(store.plans_since(u64::MAX, 1, Tenant::All).unwrap(), []);
    assert_eq!(super::super::plans::seq_of("abc-3"), Some(3));
}

#[test]
fn plans_are_seen_by_their_owner_and_by_all_readers_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let plan = plan_of("n");
    let legacy = store.put_plan(&plan, None).unwrap();
    let a1 = store.put_plan(&plan, Some("aaaa")).unwrap();
    let b1 = store.put_plan(&plan, Some("bbbb")).unwrap();
    let a2 = store.put_plan(&plan, Some("aaaa")).unwrap();
    let seqs = |tenant, since, limit| -> Vec<u64> {
        store
            .plans_since(since, limit, tenant)
            .unwrap()
            .iter()
            .map(|p| p.seq)
            .collect()
    };
    assert_eq!(seqs(Tenant::Owner("aaaa"), 0, 10), [a1.seq, a2.seq]);
    assert_eq!(seqs(Tenant::Owner("aaaa"), a1.seq, 10), [a2.seq]);
    assert_eq!(seqs(Tenant::Owner("aaaa"), 0, 1), [a1.seq]);
    assert_eq!(seqs(Tenant::Owner("bbbb"), 0, 10), [b1.seq]);
    assert_eq!(
        seqs(Tenant::Owner("aa"), 0, 10),
        [0u64; 0],
        "no prefix match"
    );
    assert_eq!(
        seqs(Tenant::All, 0, 10),
        [legacy.seq, a1.seq, b1.seq, a2.seq]
    );
    assert!(store.plan(a1.seq, Tenant::Owner("aaaa")).unwrap().is_some());
    assert_eq!(store.plan(a1.seq, Tenant::Owner("bbbb")).unwrap(), None);
    assert_eq!(store.plan(legacy.seq, Tenant::Owner("aaaa")).unwrap(), None);
    assert!(store.plan(legacy.seq, Tenant::All).unwrap().is_some());
}

/// A one-job plan made on `node`.
fn plan_of(node: &str) -> NewPlan {
    NewPlan {
        node: node.into(),
        graph_version: None,
        graph_checksum: None,
        solver_version: "test".into(),
        jobs: 1,
        shipments: 0,
        vehicles: 1,
        output: serde_json::json!({"code": 0}),
        traceparent: None,
    }
}

#[test]
fn a_database_held_open_is_refused_with_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledStore::open(dir.path()).unwrap();
    match SledStore::open(dir.path()) {
        Err(Error::Locked(path)) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("a second handle on a locked database"),
    }
}
