//! Follows the directives' `profile_graphs`: downloads each extra profile's artifact the
//! center names (resumable and sha256-checked like the default graph, see [`super::download`]),
//! installs it as a directed profile, and removes the directed profiles the center no longer
//! names. Profiles installed by hand are never removed here (see `routing::profiles`).

use std::{collections::BTreeMap, sync::Arc};

use edgeroute_protocol::sync::{EventKind, GraphDirective};

use super::client::SyncContext;
use crate::routing::profiles::valid_name;

/// One pass over the directives at a time; a pass still running when the next report's
/// directives arrive makes the loop skip them (the next report brings them again).
#[derive(Default)]
pub struct ProfileFollower {
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl ProfileFollower {
    /// Bring the served profiles in line with `wanted` in the background.
    pub fn follow(&self, ctx: &SyncContext, wanted: BTreeMap<String, GraphDirective>) {
        let served = ctx.profiles.all();
        let directed = ctx.profiles.directed();
        let up_to_date = wanted.iter().all(|(name, d)| {
            served
                .iter()
                .any(|(n, g)| n == name && g.sha256().eq_ignore_ascii_case(&d.sha256))
        }) && directed.iter().all(|name| wanted.contains_key(name));
        if up_to_date {
            return;
        }
        let Ok(guard) = self.busy.clone().try_lock_owned() else {
            return;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let mut failure = None;
            for name in directed.iter().filter(|n| !wanted.contains_key(*n)) {
                let profiles = ctx.profiles.clone();
                let name = name.clone();
                match tokio::task::spawn_blocking(move || profiles.remove(&name)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        failure = Some(format!("{:#}", anyhow::Error::new(e)));
                    }
                    Err(e) => failure = Some(format!("removing a profile failed: {e}")),
                }
            }
            for (name, directive) in &wanted {
                let current = ctx.profiles.get(name);
                if current.is_some_and(|g| g.sha256().eq_ignore_ascii_case(&directive.sha256)) {
                    continue;
                }
                if let Err(message) = install(&ctx, name, directive).await {
                    ctx.metrics.graph_download_failed();
                    tracing::warn!(profile = %name, version = %directive.version, error = %message, "profile directive not followed");
                    let message = format!("profile {name}: {message}");
                    let first = ctx.state.get().profile_error.as_deref() != Some(message.as_str());
                    if first {
                        // One event per distinct failure, as for the default graph.
                        let store = ctx.store.clone();
                        let (version, error) = (directive.version.clone(), message.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            store.record_event(EventKind::GraphFailed { version, error })
                        })
                        .await;
                    }
                    failure = Some(message);
                }
            }
            ctx.state.update(|s| s.profile_error = failure);
        });
    }
}

async fn install(ctx: &SyncContext, name: &str, directive: &GraphDirective) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is not a profile name this agent can serve"
        ));
    }
    ctx.state
        .update(|s| s.downloading = Some(directive.version.clone()));
    let fetched = ctx.fetch_graph(directive).await;
    ctx.state.update(|s| s.downloading = None);
    let bytes = fetched?;
    let profiles = ctx.profiles.clone();
    let profile = name.to_owned();
    let graph = tokio::task::spawn_blocking(move || profiles.install_directed(&profile, &bytes))
        .await
        .map_err(|e| format!("installing the profile failed: {e}"))?
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    tracing::info!(profile = %name, version = %graph.info().version, sha256 = %graph.sha256(), "profile directive followed");
    Ok(())
}
