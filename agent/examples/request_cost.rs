//! What one request costs the agent's CPU inside the process: the router with its whole
//! middleware stack driven with `tower::ServiceExt::oneshot`, no sockets. Run it under
//! `valgrind --tool=callgrind --toggle-collect=request_cost::serve_all` to count the
//! instructions of the requests alone (the graph load is left out), and compare endpoints:
//! `healthz` is the stack around an empty handler, `route` a two-point `/route` as the load
//! generator sends it. `EDGEROUTE_LOG_FORMAT=json` logs as deployed.
//!
//! ```sh
//! cargo build --release -p edgeroute-agent --example request_cost
//! # once, outside callgrind: import the map into the data directory
//! target/release/examples/request_cost /tmp/cost-db ../shared/data/osm/porto.osm.pbf import 0
//! valgrind --tool=callgrind --toggle-collect='request_cost::serve_all' \
//!     target/release/examples/request_cost /tmp/cost-db - route 2000
//! ```

use std::path::PathBuf;

use anyhow::Context;
use axum::{body::Body, http::Request};
use clap::Parser;
use edgeroute_agent::{config::Config, routing::Source, server::Agent};
use edgeroute_engine::Coord;
use edgeroute_server::telemetry::Telemetry;
use rand::{Rng, SeedableRng};
use tower::ServiceExt;

/// The agent's allocator (`src/main.rs`), so the count is the deployed one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let Some((agent, uris, telemetry)) = runtime.block_on(setup())? else {
        return Ok(());
    };
    let ok = serve_all(&runtime, agent.router(), &uris)?;
    println!("{ok} of {} answered 200", uris.len());
    runtime.block_on(telemetry.shutdown(std::time::Duration::from_secs(1)));
    Ok(())
}

/// The agent with its graph loaded, and the request paths; `None` when only importing.
async fn setup() -> anyhow::Result<Option<(Agent, Vec<String>, Telemetry)>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, map, endpoint, count] = args.as_slice() else {
        anyhow::bail!("usage: request_cost DATA_DIR MAP|- healthz|route|import COUNT");
    };
    let count: usize = count.parse().context("COUNT")?;
    let config = Config::try_parse_from([
        "edgeroute-agent",
        "--data-dir",
        data_dir,
        "--api-key",
        "bench",
        "--rate-limit",
        "0",
    ])?;
    // As the agent's main does: the spans and log filter cost what they cost in production.
    let telemetry =
        edgeroute_server::telemetry::init("edgeroute-agent", config.log_format, &config.trace)?;
    let agent = Agent::open(config).await?;
    let source = if map == "-" {
        Source::Stored
    } else {
        Source::Map {
            path: PathBuf::from(map),
            version: None,
        }
    };
    agent
        .state()
        .graphs
        .load_initial(source, false)
        .await?
        .context("no graph stored: import one first")?;
    if endpoint == "import" {
        return Ok(None);
    }
    let graph = agent
        .state()
        .graph()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let [min_lon, min_lat, max_lon, max_lat] = graph.info().bbox;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut points = Vec::new();
    while points.len() < 200 {
        let at = Coord::new(
            rng.random_range(min_lon..max_lon),
            rng.random_range(min_lat..max_lat),
        )?;
        if let Ok(snap) = graph.snap(at, 300.0) {
            points.push(snap.location);
        }
    }
    let uris: Vec<String> = (0..count)
        .map(|i| match endpoint.as_str() {
            "healthz" => "/healthz".to_owned(),
            _ => {
                let (a, b) = (points[i % 200], points[(i * 7 + 3) % 200]);
                format!(
                    "/route/v1/driving/{:.6},{:.6};{:.6},{:.6}?overview=false",
                    a.lon, a.lat, b.lon, b.lat
                )
            }
        })
        .collect();
    Ok(Some((agent, uris, telemetry)))
}

/// The measured part, a function of its own for `--toggle-collect`: every request through
/// the router, one after another.
#[inline(never)]
fn serve_all(
    runtime: &tokio::runtime::Runtime,
    app: axum::Router,
    uris: &[String],
) -> anyhow::Result<usize> {
    runtime.block_on(serve(app, uris))
}

async fn serve(app: axum::Router, uris: &[String]) -> anyhow::Result<usize> {
    let mut ok = 0;
    for uri in uris {
        let request = Request::builder()
            .uri(uri)
            .header("authorization", "Bearer bench")
            .body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        ok += usize::from(status.is_success());
    }
    Ok(ok)
}
