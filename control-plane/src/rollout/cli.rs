//! `edgeroute-control-plane rollout status|promote|abort|pause|resume --region R`: read and
//! steer a region's graph rollout through the center's API.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use edgeroute_protocol::{
    rollout::{ArmFigures, RolloutStatus},
    sync::rfc3339,
};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutVerb {
    /// Show the region's current or last rollout.
    Status,
    /// Put every node on the new version now.
    Promote,
    /// Roll back now.
    Abort,
    /// Stop judging and stepping.
    Pause,
    /// Continue a paused rollout (its step is judged afresh).
    Resume,
}

/// Arguments of `rollout`.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// What to do.
    #[arg(value_enum)]
    pub verb: RolloutVerb,
    /// The region.
    #[arg(long, env = "EDGEROUTE_REGION")]
    pub region: String,
    /// The center's base URL (`http://host:port`).
    #[arg(long, env = "EDGEROUTE_SERVER")]
    pub center: reqwest::Url,
    /// The center's admin key.
    #[arg(long, env = "EDGEROUTE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// PEM CA bundle that signed the center's certificate (default: the system's roots).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print the status as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Call the center and print the rollout's status.
pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let client = crate::graphs::push::http_client(args.ca.as_deref())?;
    let region = args.region.trim();
    if region.is_empty() || region.contains('/') {
        bail!("--region must be a region name; got {:?}", args.region);
    }
    let path = match args.verb {
        RolloutVerb::Status => format!("api/v1/regions/{region}/rollout"),
        RolloutVerb::Promote => format!("api/v1/regions/{region}/rollout/promote"),
        RolloutVerb::Abort => format!("api/v1/regions/{region}/rollout/abort"),
        RolloutVerb::Pause => format!("api/v1/regions/{region}/rollout/pause"),
        RolloutVerb::Resume => format!("api/v1/regions/{region}/rollout/resume"),
    };
    let url = args.center.join(&path)?;
    let request = match args.verb {
        RolloutVerb::Status => client.get(url),
        _ => client.post(url),
    };
    let response = request
        .bearer_auth(&args.admin_key)
        .send()
        .await
        .with_context(|| format!("cannot reach the center at {}", args.center))?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("the center answered {status}: {message}");
    }
    let rollout: RolloutStatus = serde_json::from_str(&body)
        .with_context(|| format!("the center answered something else than a rollout: {body}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rollout)?);
    } else {
        print!("{}", describe(region, &rollout));
    }
    Ok(())
}

fn arm(name: &str, a: &ArmFigures) -> String {
    format!(
        "  {name:<7} {}/{} nodes reporting, {} requests, {} errors, p99 {}\n",
        a.reporting_nodes,
        a.nodes,
        a.requests,
        a.errors,
        a.p99_ms.map_or_else(|| "-".into(), |p| format!("{p} ms"))
    )
}

/// The status as an operator reads it.
pub fn describe(region: &str, s: &RolloutStatus) -> String {
    let mut out = format!(
        "region {region}: {:?} rollout {} -> {}\nphase   {}\nstep    {} ({}%), canary nodes: {}\nreason  {}\nupdated {}\n",
        s.target,
        s.from_version.as_deref().unwrap_or("-"),
        s.to_version,
        s.phase.as_str(),
        s.step + 1,
        s.step_percent,
        if s.canary_nodes.is_empty() {
            "-".into()
        } else {
            s.canary_nodes.join(", ")
        },
        s.reason,
        rfc3339(s.updated_at_ms),
    );
    if let Some(v) = &s.last_verdict {
        out.push_str(&format!(
            "last verdict {} at {}: {}\n",
            v.kind.as_str(),
            rfc3339(v.at_ms),
            v.reason
        ));
        out.push_str(&arm("canary", &v.canary));
        out.push_str(&arm("stable", &v.stable));
    }
    out
}
