//! `edgeroute-control-plane rollout status|promote|abort|pause|resume --region R`: read and
//! steer a region's rollout. Graph rollouts run at the center and are steered through its
//! API (`--center`); agent-version rollouts run in the Kubernetes controller and are steered
//! through the EdgeRegion (`--namespace`): the command sets the
//! `edgeroute.io/rollout-action` annotation the controller acts on once, and reads the
//! rollout from the EdgeRegion's status.

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
    /// The center's base URL (`http://host:port`): steer the region's graph rollout.
    #[arg(long, env = "EDGEROUTE_SERVER", required_unless_present = "namespace")]
    pub center: Option<reqwest::Url>,
    /// The center's admin key (with `--center`).
    #[arg(long, env = "EDGEROUTE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Steer the region's agent-version rollout instead: the Kubernetes namespace of its
    /// EdgeRegion (the kubeconfig or in-cluster credentials are used).
    #[arg(long, conflicts_with = "center")]
    pub namespace: Option<String>,
    /// PEM CA bundle that signed the center's certificate (default: the system's roots).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print the status as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Call the center (or Kubernetes) and print the rollout's status.
pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let region = args.region.trim();
    if region.is_empty() || region.contains('/') {
        bail!("--region must be a region name; got {:?}", args.region);
    }
    if let Some(namespace) = &args.namespace {
        let client = kube::Client::try_default()
            .await
            .context("cannot reach Kubernetes (kubeconfig or in-cluster credentials)")?;
        let rollout = steer_agent_rollout(client, namespace, region, args.verb).await?;
        return print_rollout(region, &rollout, args.json);
    }
    let (Some(center), Some(admin_key)) = (&args.center, &args.admin_key) else {
        bail!("--center and --admin-key are needed to steer a graph rollout");
    };
    let client = crate::graphs::push::http_client(args.ca.as_deref())?;
    let path = match args.verb {
        RolloutVerb::Status => format!("api/v1/regions/{region}/rollout"),
        RolloutVerb::Promote => format!("api/v1/regions/{region}/rollout/promote"),
        RolloutVerb::Abort => format!("api/v1/regions/{region}/rollout/abort"),
        RolloutVerb::Pause => format!("api/v1/regions/{region}/rollout/pause"),
        RolloutVerb::Resume => format!("api/v1/regions/{region}/rollout/resume"),
    };
    let url = center.join(&path)?;
    let request = match args.verb {
        RolloutVerb::Status => client.get(url),
        _ => client.post(url),
    };
    let response = request
        .bearer_auth(admin_key)
        .send()
        .await
        .with_context(|| format!("cannot reach the center at {center}"))?;
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
    print_rollout(region, &rollout, args.json)
}

fn print_rollout(region: &str, rollout: &RolloutStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rollout)?);
    } else {
        print!("{}", describe(region, rollout));
    }
    Ok(())
}

/// Steer the agent-version rollout of the EdgeRegion `region` in `namespace`: read its
/// status, and for an action set the annotation the controller acts on (with a nonce, so
/// the same action can be asked twice). Refuses an action when no rollout is running, as the
/// center's API does, and answers the rollout as the status shows it.
pub async fn steer_agent_rollout(
    client: kube::Client,
    namespace: &str,
    region: &str,
    verb: RolloutVerb,
) -> anyhow::Result<RolloutStatus> {
    use edgeroute_protocol::crd::{EdgeRegion, ROLLOUT_ACTION_ANNOTATION};
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<EdgeRegion> = Api::namespaced(client, namespace);
    let found = api
        .get_opt(region)
        .await
        .with_context(|| format!("cannot read EdgeRegion {namespace}/{region}"))?
        .with_context(|| format!("no EdgeRegion {region} in namespace {namespace}"))?;
    let Some(rollout) = found.status.and_then(|s| s.rollout) else {
        bail!("EdgeRegion {namespace}/{region} has no agent rollout");
    };
    let action = match verb {
        RolloutVerb::Status => return Ok(rollout),
        RolloutVerb::Promote => "promote",
        RolloutVerb::Abort => "abort",
        RolloutVerb::Pause => "pause",
        RolloutVerb::Resume => "resume",
    };
    if rollout.phase.is_terminal() {
        bail!(
            "the rollout of {region} to {} is over ({}): nothing to {action}",
            rollout.to_version,
            rollout.phase.as_str()
        );
    }
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let patch = serde_json::json!({
        "metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: format!("{action}:{nonce}")}}
    });
    api.patch(region, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot annotate EdgeRegion {namespace}/{region}"))?;
    eprintln!("asked the controller to {action} the rollout of {region}");
    Ok(rollout)
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
