//! Following the center's directives for the default graph: download and activate the
//! graph a directive names, and hold the shadow graph a graph canary compares against.

use std::sync::{Arc, Mutex};

use edgeroute_protocol::sync::{EventKind, GraphDirective, ShadowDirective};

use super::client::SyncContext;
use crate::routing::shadow::ShadowGraph;

/// Start downloading the directive's graph unless it is served already or being fetched.
pub(super) fn follow_graph(
    ctx: &SyncContext,
    directive: GraphDirective,
    downloading: &Arc<tokio::sync::Mutex<()>>,
) {
    let served = ctx
        .graphs
        .holder()
        .get()
        .is_some_and(|g| g.sha256().eq_ignore_ascii_case(&directive.sha256));
    if served {
        return;
    }
    let Ok(guard) = downloading.clone().try_lock_owned() else {
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _guard = guard;
        ctx.state
            .update(|s| s.downloading = Some(directive.version.clone()));
        let result = install(&ctx, &directive).await;
        ctx.state.update(|s| s.downloading = None);
        match result {
            Ok(()) => ctx.state.update(|s| s.graph_error = None),
            Err(message) => {
                ctx.metrics.graph_download_failed();
                tracing::warn!(version = %directive.version, error = %message, "graph directive not followed");
                let first = ctx.state.get().graph_error.as_deref() != Some(message.as_str());
                ctx.state.update(|s| s.graph_error = Some(message.clone()));
                if first {
                    // One event per distinct failure: a retry loop must not flood the outbox.
                    let store = ctx.store.clone();
                    let version = directive.version.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        store.record_event(EventKind::GraphFailed {
                            version,
                            error: message,
                        })
                    })
                    .await;
                }
            }
        }
    });
}

pub(super) async fn install(ctx: &SyncContext, directive: &GraphDirective) -> Result<(), String> {
    let bytes = ctx.fetch_graph(directive).await?;
    let activated = ctx
        .graphs
        .upload(bytes, "directive")
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    tracing::info!(version = %activated.version, sha256 = %activated.sha256, "graph directive followed");
    Ok(())
}

/// Follows the directives' `shadow`: loads the graph it names beside the served one (from
/// the store when it is there, as the previous version usually is, else downloaded like a
/// graph directive but never activated), and unloads it when a directive says `None`.
#[derive(Default)]
pub(super) struct ShadowFollower {
    /// One load at a time.
    loading: Arc<tokio::sync::Mutex<()>>,
    /// The latest directive: a load that finishes after the center changed its mind
    /// installs nothing.
    wanted: Arc<Mutex<Option<ShadowDirective>>>,
}

impl ShadowFollower {
    pub(super) fn follow(&self, ctx: &SyncContext, directive: Option<ShadowDirective>) {
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.clone_from(&directive);
        }
        let Some(directive) = directive else {
            ctx.shadow.unload();
            return;
        };
        if let Some(current) = ctx.shadow.current()
            && current
                .graph
                .sha256()
                .eq_ignore_ascii_case(&directive.graph.sha256)
        {
            if current.sample_rate != directive.sample_rate
                || current.duration_tolerance != directive.duration_tolerance
            {
                ctx.shadow.load(ShadowGraph {
                    graph: current.graph.clone(),
                    sample_rate: directive.sample_rate,
                    duration_tolerance: directive.duration_tolerance,
                });
            }
            return;
        }
        let Ok(guard) = self.loading.clone().try_lock_owned() else {
            return;
        };
        let ctx = ctx.clone();
        let wanted = self.wanted.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let target = directive.graph;
            match load_shadow(&ctx, &target).await {
                Ok(graph) => {
                    // Install only what the latest directive still asks for, with its rates.
                    let latest = wanted.lock().ok().and_then(|w| w.clone());
                    if let Some(latest) = latest.filter(|l| l.graph.sha256 == target.sha256) {
                        ctx.shadow.load(ShadowGraph {
                            graph,
                            sample_rate: latest.sample_rate,
                            duration_tolerance: latest.duration_tolerance,
                        });
                    }
                    ctx.state.update(|s| s.shadow_error = None);
                }
                Err(message) => {
                    tracing::warn!(version = %target.version, error = %message, "shadow graph not loaded");
                    ctx.state.update(|s| s.shadow_error = Some(message));
                }
            }
        });
    }
}

/// The graph a shadow directive names: the served one itself if it is that graph, the
/// stored artifact if there is one, else a verified download (not stored: it is only
/// compared against, and the store's retention keeps the versions that may be served).
pub(super) async fn load_shadow(
    ctx: &SyncContext,
    directive: &GraphDirective,
) -> Result<Arc<edgeroute_engine::Graph>, String> {
    if let Some(served) = ctx.graphs.holder().get()
        && served.sha256().eq_ignore_ascii_case(&directive.sha256)
    {
        return Ok(served);
    }
    let store = ctx.store.clone();
    let version = directive.version.clone();
    let stored = tokio::task::spawn_blocking(move || store.graph(&version))
        .await
        .map_err(|e| format!("loading the stored shadow graph failed: {e}"))?
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    let bytes = match stored {
        Some(bytes) => bytes,
        None => ctx.fetch_graph(directive).await?,
    };
    let graph = tokio::task::spawn_blocking(move || edgeroute_engine::Graph::from_artifact(&bytes))
        .await
        .map_err(|e| format!("decoding the shadow graph failed: {e}"))?
        .map_err(|e| format!("invalid shadow graph artifact: {:#}", anyhow::Error::new(e)))?;
    if !graph.sha256().eq_ignore_ascii_case(&directive.sha256) {
        // A stored version label reused for other content: never compare against the wrong
        // graph.
        return Err(format!(
            "stored version {} has sha256 {}, the directive says {}",
            directive.version,
            graph.sha256(),
            directive.sha256
        ));
    }
    Ok(Arc::new(graph))
}
