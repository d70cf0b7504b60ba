//! The fleet dashboard in a real browser: the real center and three real agents on
//! loopback, traffic on two of them, the third killed until it goes stale, then Debian's
//! Chromium headless loads the pages and their DOM is read after the script ran.
//!
//! Without a Chromium (`chromium`, `chromium-browser` or `EDGEROUTE_CHROMIUM`) the test
//! prints a notice and passes; with `EDGEROUTE_REQUIRE_BROWSER=1` (as `.ci/run` sets it) it
//! fails instead. With `EDGEROUTE_SCREENSHOT_DIR=<dir>` it also saves `dashboard.png` and
//! `dashboard-node.png` there (how `docs/img/` was made).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use edgeroute_tests::{
    fleet::{ADMIN, TOKEN, artifact, client, free_port, get_json, optimize_body, start_center},
    procs::{Proc, binary, eventually},
};

/// The Chromium to drive, if this machine has one.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EDGEROUTE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Run headless Chromium on `url` with `extra` flags; its stdout (the DOM with `--dump-dom`).
async fn browse(chromium: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        // Let the script fetch and draw before the DOM is read.
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium took over 90 s")
        .expect("chromium did not start");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The opening tag of the element carrying `attr` (`data-node="edge-1"`), if any.
fn tag_with<'a>(dom: &'a str, attr: &str) -> Option<&'a str> {
    let at = dom.find(attr)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

/// An agent reporting to `center` every 300 ms, at `lat,lon`, advertising its real URL.
async fn agent(dir: &Path, center: &str, name: &str, location: &str) -> Proc {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--listen",
        &listen,
        "--advertise-url",
        &format!("http://{listen}"),
        "--location",
        location,
        "--data-dir",
        dir.join(name).to_str().unwrap(),
        "--graph",
        artifact("monaco-2026-12").to_str().unwrap(),
        "--no-auth",
        "--node-name",
        name,
        "--region",
        "monaco",
        "--control-plane",
        center,
        "--sync-token",
        TOKEN,
        "--sync-interval-ms",
        "300",
    ]
    .map(String::from)
    .to_vec();
    Proc::start(
        binary("edgeroute-agent").unwrap(),
        args,
        vec![],
        dir.join(format!("{name}.log")),
    )
    .await
    .unwrap()
}

/// Clients calling an agent's `/optimize` and `/route` until `stop`. Answers are not
/// checked: what the agent answered is what the dashboard must show, 503s included.
fn traffic(
    http: &reqwest::Client,
    url: &str,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (http, url, stop) = (http.clone(), url.to_owned(), stop.clone());
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let _ = http
                .post(format!("{url}/optimize?time_limit_ms=20"))
                .json(&optimize_body(i))
                .send()
                .await;
            for _ in 0..5 {
                let _ = http
                    .get(format!(
                        "{url}/route/v1/driving/7.4197,43.7314;7.4246,43.7384"
                    ))
                    .send()
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

async fn node_states(center: &str) -> Option<Vec<(String, String)>> {
    let page = get_json(&client(), &format!("{center}/api/v1/nodes"), Some(ADMIN)).await?;
    page["nodes"].as_array().map(|nodes| {
        nodes
            .iter()
            .map(|n| {
                let s = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
                (s("node"), s("state"))
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_in_a_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("EDGEROUTE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "EDGEROUTE_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)"
        );
        // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must
        // be seen.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"NOTICE: skipping the dashboard browser test: no chromium on PATH \
              (apt-get install chromium, or set EDGEROUTE_CHROMIUM)\n",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(
        dir.path(),
        &[
            "--stale-after-s",
            "2",
            "--offline-after-s",
            "3600",
            "--history-point-s",
            "1",
        ],
    )
    .await;
    let url = center.url.clone();
    let mut agents = Vec::new();
    for (name, at) in [
        ("edge-1", "43.7314,7.4197"),
        ("edge-2", "43.7384,7.4246"),
        ("edge-3", "43.7270,7.4150"),
    ] {
        agents.push(agent(dir.path(), &url, name, at).await);
    }
    let http = client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let work: Vec<_> = agents[..2]
        .iter()
        .map(|a| traffic(&http, &a.url, &stop))
        .collect();
    eventually(Duration::from_secs(120), "three nodes online", || {
        let url = url.clone();
        async move {
            let states = node_states(&url).await?;
            (states.len() == 3 && states.iter().all(|(_, s)| s == "online")).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", center.log_text()));
    // Traffic long enough for a few history points on the node page; it goes on while the
    // browser looks, so the page shows live rates.
    tokio::time::sleep(Duration::from_secs(6)).await;
    agents[2].kill9().await;
    eventually(Duration::from_secs(30), "edge-3 stale", || {
        let url = url.clone();
        async move {
            let states = node_states(&url).await?;
            states
                .iter()
                .any(|(n, s)| n == "edge-3" && s == "stale")
                .then_some(())
        }
    })
    .await
    .unwrap();
    let dom = browse(&chromium, &format!("{url}/#key={ADMIN}"), &["--dump-dom"]).await;
    for (node, state) in [
        ("edge-1", "online"),
        ("edge-2", "online"),
        ("edge-3", "stale"),
    ] {
        let row = tag_with(&dom, &format!("data-node=\"{node}\""))
            .unwrap_or_else(|| panic!("no row for {node} after the script ran:\n{dom}"));
        assert!(row.contains(&format!("row-{state}")), "{node}: {row}");
    }
    assert!(dom.contains("stale · "), "the stale node says for how long");

    let node_dom = browse(
        &chromium,
        &format!("{url}/nodes/edge-1#key={ADMIN}"),
        &["--dump-dom"],
    )
    .await;
    for series in ["s-rate", "s-err", "s-p50", "s-p99"] {
        let path = tag_with(&node_dom, &format!("class=\"line {series}\""))
            .unwrap_or_else(|| panic!("no {series} chart line:\n{node_dom}"));
        assert!(path.contains("d=\"M"), "{path}");
    }
    assert!(
        tag_with(&node_dom, "data-plan=\"").is_some(),
        "no plan listed on the node page:\n{node_dom}"
    );

    let unknown = browse(
        &chromium,
        &format!("{url}/nodes/nobody#key={ADMIN}"),
        &["--dump-dom"],
    )
    .await;
    assert!(unknown.contains("never reported"), "{unknown}");

    let no_key = browse(&chromium, &format!("{url}/"), &["--dump-dom"]).await;
    assert!(no_key.contains("class=\"keyform\""), "{no_key}");
    assert!(!no_key.contains("data-node="));
    let wrong = browse(&chromium, &format!("{url}/#key=wrong"), &["--dump-dom"]).await;
    assert!(wrong.contains("refused that key"), "{wrong}");

    if let Some(out) = std::env::var_os("EDGEROUTE_SCREENSHOT_DIR") {
        let out = PathBuf::from(out);
        for (file, path) in [
            ("dashboard.png", "/"),
            ("dashboard-node.png", "/nodes/edge-1"),
        ] {
            let target = out.join(file);
            browse(
                &chromium,
                &format!("{url}{path}#key={ADMIN}"),
                &[
                    &format!("--screenshot={}", target.display()),
                    "--window-size=1400,900",
                    "--hide-scrollbars",
                ],
            )
            .await;
            assert!(target.is_file(), "no screenshot at {}", target.display());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in work {
        w.await.unwrap();
    }
}
