//! Hardening (issue 16), in process and without a graph: keys are exactly the configured
//! ones across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, start_in_process};

#[tokio::test]
async fn a_key_removed_from_the_configuration_is_refused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let client = client();
    let status = |agent: &common::InProcess, key: &str| {
        client
            .get(format!("{}/v1/status", agent.url))
            .bearer_auth(key)
            .send()
    };

    let agent = start_in_process(&db, &["--api-key", "k1"]).await;
    assert_eq!(status(&agent, "k1").await.unwrap().status(), 200);
    agent.stop().await.unwrap();

    let agent = start_in_process(&db, &["--api-key", "k2"]).await;
    assert_eq!(status(&agent, "k1").await.unwrap().status(), 401);
    assert_eq!(status(&agent, "k2").await.unwrap().status(), 200);
    agent.stop().await.unwrap();
}
