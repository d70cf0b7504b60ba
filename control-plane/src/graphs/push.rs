//! `edgeroute-control-plane graph push`: upload an artifact to a running center's registry
//! under the version written in it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use edgeroute_engine::Graph;

/// Arguments of `graph push`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The center's base URL (`http://host:port`).
    #[arg(long, env = "EDGEROUTE_SERVER")]
    pub server: reqwest::Url,
    /// The center's admin key.
    #[arg(long, env = "EDGEROUTE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// The artifact (`graph build --out`).
    #[arg(long)]
    pub graph: PathBuf,
    /// Also make it the desired graph of this region.
    #[arg(long)]
    pub region: Option<String>,
    /// PEM CA bundle that signed the center's certificate (default: the system's roots).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// A rustls HTTP client, trusting `ca` only when given.
pub fn http_client(ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(600));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    Ok(builder.build()?)
}

/// Upload, and print what the registry answered.
pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let path = args.graph.clone();
    let version = tokio::task::spawn_blocking(move || {
        Graph::read_artifact(&path).map(|g| g.info().version.clone())
    })
    .await?
    .with_context(|| format!("{} is not a valid graph artifact", args.graph.display()))?;
    let client = http_client(args.ca.as_deref())?;
    let file = tokio::fs::File::open(&args.graph).await?;
    let size = file.metadata().await?.len();
    let url = args.server.join(&format!("api/v1/graphs/{version}"))?;
    let response = client
        .put(url)
        .bearer_auth(&args.admin_key)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::new(file),
        ))
        .send()
        .await
        .context("cannot reach the control plane")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the control plane refused the upload ({status}): {body}");
    }
    println!("{body}");
    if let Some(region) = &args.region {
        let url = args
            .server
            .join(&format!("api/v1/regions/{region}/graph"))?;
        let response = client
            .put(url)
            .bearer_auth(&args.admin_key)
            .json(&serde_json::json!({ "version": version }))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("the control plane refused the region's graph ({status}): {body}");
        }
        println!("{body}");
    }
    Ok(())
}
