//! The graph rollout driver. A region's graph version changes through
//! `PUT /api/v1/regions/{region}/graph` or its EdgeRegion; when the region already has a
//! graph and nodes, [`request_graph`] starts a rollout instead of switching every node.
//!
//! - The region's graph in the store stays the *stable* version until the rollout is
//!   promoted; the rollout record names the new one and its canary nodes. Directives
//!   ([`directive_graph`]) send canaries the new graph and the stable one as shadow, and
//!   every other node (including nodes that join mid-rollout) the stable one.
//! - [`tick`] judges each rollout whose window is due, on the windows its nodes reported
//!   since the step started (canaries only while serving the new version, stable nodes
//!   while serving the old), and applies the verdict; [`act`] applies an operator's action.
//! - A new version while a rollout runs supersedes it: the running rollout ends
//!   `RolledBack` ("superseded"), and a rollout from the stable version to the newest one
//!   starts. Asking for the stable version again just aborts the running rollout.
//! - A version that was rolled back is not retried by the EdgeRegion watcher (it would
//!   restart on every re-list); an explicit `PUT` retries it.
//! - Everything is stored before it is acted on: a restarted center reads the record and
//!   goes on from the same step (its windows restart empty, see [`super::windows`]).

use std::time::Duration;

use edgeroute_protocol::{
    rollout::{RolloutAction, RolloutPhase, RolloutStatus, RolloutTarget},
    sync::{GraphDirective, ShadowDirective},
};

use super::{
    analysis,
    machine::{RolloutRecord, Transition},
    windows::{Serving, Windows},
};
use crate::{serve::Center, sync::store};

/// Why a rollout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The store failed.
    #[error("storage failed")]
    Storage(#[from] store::Error),
    /// The region has no rollout.
    #[error("{0}")]
    NoRollout(String),
    /// The action does not apply to the rollout's phase.
    #[error("{0}")]
    Refused(String),
}

/// What asking for a region's graph did.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphRequest {
    /// Every node switches now (the region's first graph, no nodes yet, or the version
    /// is not registered yet).
    Set,
    /// The region already serves it (or is already rolling it out).
    Unchanged,
    /// A rollout started (or a running one was superseded and a new one started).
    Started(RolloutStatus),
    /// The stable version was asked for during a rollout: the rollout was aborted.
    Aborted(RolloutStatus),
    /// The version was rolled back before; the watcher does not retry it.
    Rejected(RolloutStatus),
}

/// Names of the nodes that reported for `region`, sorted.
pub fn region_nodes(center: &Center, region: &str) -> Vec<String> {
    let mut nodes: Vec<String> = center
        .fleet
        .records()
        .into_iter()
        .filter(|r| r.report.region == region)
        .map(|r| r.report.node)
        .collect();
    nodes.sort();
    nodes
}

/// The region's current or last rollout, from the cache or the store.
pub async fn record(center: &Center, region: &str) -> Result<Option<RolloutRecord>, store::Error> {
    if let Some(cached) = center.rollouts.cached(region) {
        return Ok(cached);
    }
    let stored = center.store.rollout(region).await?;
    center.rollouts.remember(region, stored.clone());
    Ok(stored)
}

/// Store the record, then cache, count and log its change.
async fn save(
    center: &Center,
    region: &str,
    record: &RolloutRecord,
    transition: Option<&Transition>,
) -> Result<(), store::Error> {
    if let Some(t) = transition
        && t.to == RolloutPhase::Promoted
    {
        // Promotion is the moment the new version becomes the region's graph for all.
        center
            .store
            .set_region_graph(region, &record.status.to_version)
            .await?;
    }
    center.store.put_rollout(region, record).await?;
    center.rollouts.remember(region, Some(record.clone()));
    if let Some(t) = transition {
        center.rollouts.metrics.transition(t.to);
        let s = &record.status;
        tracing::info!(
            %region,
            from_version = s.from_version.as_deref().unwrap_or(""),
            to_version = %s.to_version,
            from = t.from.as_str(),
            phase = t.to.as_str(),
            step = s.step + 1,
            canary_nodes = s.canary_nodes.len(),
            reason = %t.reason,
            "graph rollout transition"
        );
    }
    Ok(())
}

/// Ask for `version` as `region`'s graph: start, supersede or skip a rollout, or set it
/// directly. `retry_rolled_back` lets an explicit request retry a version that was rolled
/// back (the EdgeRegion watcher passes `false`).
pub async fn request_graph(
    center: &Center,
    region: &str,
    version: &str,
    retry_rolled_back: bool,
) -> Result<GraphRequest, RolloutError> {
    let _one = center.rollouts.ops.lock().await;
    let now = center.rollouts.clock.now_ms();
    let current = center.store.region_graph(region).await?;
    let existing = record(center, region).await?;
    if let Some(mut running) = existing.clone().filter(|r| !r.status.phase.is_terminal()) {
        if running.status.to_version == version {
            return Ok(GraphRequest::Unchanged);
        }
        let t = running.supersede(version, now);
        save(center, region, &running, t.as_ref()).await?;
        if current.as_deref() == Some(version) {
            return Ok(GraphRequest::Aborted(running.status));
        }
    } else if current.as_deref() == Some(version) {
        return Ok(GraphRequest::Unchanged);
    } else if let Some(last) = existing.filter(|r| {
        !retry_rolled_back
            && r.status.phase == RolloutPhase::RolledBack
            && r.status.to_version == version
    }) {
        return Ok(GraphRequest::Rejected(last.status));
    }
    let nodes = region_nodes(center, region);
    let registered = center.store.graph(version).await?.is_some();
    let Some(from) = current.filter(|_| !nodes.is_empty() && registered) else {
        center.store.set_region_graph(region, version).await?;
        tracing::info!(%region, %version, "region graph set for every node");
        return Ok(GraphRequest::Set);
    };
    let record = RolloutRecord::start(
        RolloutTarget::Graph,
        Some(from),
        version.to_owned(),
        center.rollouts.policy(region),
        &nodes,
        now,
    );
    let t = Transition {
        from: RolloutPhase::Progressing,
        to: RolloutPhase::Progressing,
        reason: record.status.reason.clone(),
    };
    save(center, region, &record, Some(&t)).await?;
    Ok(GraphRequest::Started(record.status))
}

/// Apply an operator's action to `region`'s rollout.
pub async fn act(
    center: &Center,
    region: &str,
    action: RolloutAction,
) -> Result<RolloutStatus, RolloutError> {
    let _one = center.rollouts.ops.lock().await;
    let Some(mut r) = record(center, region).await? else {
        return Err(RolloutError::NoRollout(format!(
            "region {region:?} has no rollout"
        )));
    };
    let t = r
        .act(action, center.rollouts.clock.now_ms())
        .map_err(|e| RolloutError::Refused(e.0))?;
    save(center, region, &r, Some(&t)).await?;
    Ok(r.status)
}

/// Judge every rollout whose window is due; how many were judged. On the first call the
/// rollouts of every region with known nodes are read from the store (after a restart).
pub async fn tick(center: &Center) -> Result<usize, store::Error> {
    let now = center.rollouts.clock.now_ms();
    center.rollouts.windows.prune(now);
    if !center
        .rollouts
        .scanned
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        // Once per process: every rollout started later goes through the cache, and every
        // region with a stored rollout has nodes, all of them loaded at start.
        for region in &fleet_regions(center) {
            record(center, region).await?;
        }
        center
            .rollouts
            .scanned
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let shared = center.store.shared();
    if shared {
        share_windows(center, now).await;
        follow_records(center).await?;
    }
    let mut judged = 0;
    for region in center.rollouts.active_regions() {
        // With several replicas one drives each region: the holder of its lease.
        if shared
            && !center
                .store
                .lease(
                    &lease_name(&region),
                    &center.settings.replica,
                    center.settings.rollout_lease_ms,
                )
                .await?
        {
            continue;
        }
        let _one = center.rollouts.ops.lock().await;
        // Re-read under the lock: an action may have changed it meanwhile (on another
        // replica too, with a shared store).
        let Some(mut r) = (if shared {
            fresh_record(center, &region).await?
        } else {
            record(center, &region).await?
        }) else {
            continue;
        };
        let now = center.rollouts.clock.now_ms();
        if !r.due(now) {
            continue;
        }
        let nodes = region_nodes(center, &region);
        let verdict = if shared {
            // Every replica's windows, not only those this one received.
            let samples = center
                .store
                .windows(&region, r.status.step_started_at_ms)
                .await?;
            let all = Windows::of_samples(center.rollouts.windows.config(), samples);
            judge(&all, &r, &nodes, now)
        } else {
            judge(&center.rollouts.windows, &r, &nodes, now)
        };
        center.rollouts.metrics.verdict(verdict.kind);
        tracing::info!(
            %region,
            to_version = %r.status.to_version,
            verdict = verdict.kind.as_str(),
            reason = %verdict.reason,
            "graph rollout window judged"
        );
        let t = r.on_verdict(verdict, &nodes, now);
        save(center, &region, &r, t.as_ref()).await?;
        judged += 1;
    }
    Ok(judged)
}

/// The lease a replica holds to drive `region`'s rollout.
pub fn lease_name(region: &str) -> String {
    format!("rollout/{region}")
}

/// Write the windows this replica received to the store, where the driver reads them,
/// and forget those too old to judge. A failure keeps them for the next tick.
async fn share_windows(center: &Center, now: u64) {
    let windows = &center.rollouts.windows;
    let samples = windows.take_unshared();
    if let Err(err) = center
        .store
        .put_windows(&center.settings.replica, &samples)
        .await
    {
        tracing::warn!(error = %err, "sharing rollout windows failed; retrying on the next tick");
        windows.requeue_unshared(samples);
        return;
    }
    // Every replica prunes; the statement is idempotent and touches old rows only.
    let horizon = now.saturating_sub(windows.config().retention_ms);
    if let Err(err) = center.store.prune_windows(horizon).await {
        tracing::warn!(error = %err, "pruning shared rollout windows failed");
    }
}

/// With several replicas, another one may start, judge or end a rollout: re-read the
/// record of every region with nodes, so directives and watches follow.
async fn follow_records(center: &Center) -> Result<(), store::Error> {
    for region in &fleet_regions(center) {
        fresh_record(center, region).await?;
    }
    Ok(())
}

/// Every region some node of the fleet reported, once each, in order.
fn fleet_regions(center: &Center) -> Vec<String> {
    let mut regions: Vec<String> = center
        .fleet
        .records()
        .into_iter()
        .map(|r| r.report.region)
        .collect();
    regions.sort();
    regions.dedup();
    regions
}

/// The record as stored now, cached.
async fn fresh_record(
    center: &Center,
    region: &str,
) -> Result<Option<RolloutRecord>, store::Error> {
    let stored = center.store.rollout(region).await?;
    if center.rollouts.cached(region).as_ref() != Some(&stored) {
        // Before the record is published: a directive never pairs the new record with a
        // region graph cached before another replica changed it.
        center.directive_cache.invalidate(region);
    }
    center.rollouts.remember(region, stored.clone());
    Ok(stored)
}

/// Judge `record`'s current window over the region's `nodes` at `now`, from `windows`.
fn judge(
    windows: &Windows,
    record: &RolloutRecord,
    nodes: &[String],
    now: u64,
) -> edgeroute_protocol::rollout::Verdict {
    let s = &record.status;
    let window_ms = u64::from(record.policy.analysis_window_seconds.max(1)) * 1000;
    let since = s.step_started_at_ms;
    let recent = now.saturating_sub(window_ms).max(since);
    let stable: Vec<String> = nodes
        .iter()
        .filter(|n| !s.canary_nodes.contains(n))
        .cloned()
        .collect();
    let canary = windows.arm(
        &s.canary_nodes,
        Serving::Graph(&s.to_version),
        since,
        recent,
    );
    let stable_serving = s
        .from_version
        .as_deref()
        .map_or(Serving::Any, Serving::Graph);
    let stable = windows.arm(&stable, stable_serving, since, recent);
    analysis::judge(&record.policy, s.target, &canary, &stable, now)
}

/// Judge the region's canary nodes against its other nodes since `since_ms` for the
/// controller (agent rollouts: every report counts, whatever graph it served). The first
/// question about a region starts keeping its reports, so it is answered `Inconclusive`
/// (no data yet) unless a graph rollout already watched the region: the controller should
/// ask at the start of a step too.
pub fn analyse(
    center: &Center,
    region: &str,
    request: &edgeroute_protocol::rollout::AnalysisRequest,
) -> edgeroute_protocol::rollout::Verdict {
    let now = center.rollouts.clock.now_ms();
    let window_ms = u64::from(request.policy.analysis_window_seconds.max(1)) * 1000;
    // The region's reports are kept from the first question on, for a while after the
    // last: the controller asks at least once per window.
    center.rollouts.windows.watch_at_least(
        region,
        now.saturating_add(window_ms.saturating_mul(2).max(600_000)),
    );
    let recent = now.saturating_sub(window_ms).max(request.since_ms);
    let stable: Vec<String> = region_nodes(center, region)
        .into_iter()
        .filter(|n| !request.canary_nodes.contains(n))
        .collect();
    let windows = &center.rollouts.windows;
    let canary = windows.arm(
        &request.canary_nodes,
        Serving::Any,
        request.since_ms,
        recent,
    );
    let stable = windows.arm(&stable, Serving::Any, request.since_ms, recent);
    analysis::judge(&request.policy, request.target, &canary, &stable, now)
}

/// The graph `node` of `region` should serve and the shadow graph to compare against:
/// during a rollout a canary gets the new version and the stable one as shadow; everyone
/// else the region's (stable) graph.
pub async fn directive_graph(
    center: &Center,
    region: &str,
    node: &str,
) -> Result<(Option<String>, Option<ShadowPlan>), store::Error> {
    // The record before the region graph: once it shows a promotion, the region graph
    // read after it is the promoted one (the cache entry is dropped before a changed
    // record is published, see `fresh_record`).
    match record(center, region).await? {
        Some(r) if r.is_canary(node) => {
            let shadow = r
                .status
                .from_version
                .clone()
                .filter(|_| r.policy.shadow_sample_rate > 0.0)
                .map(|version| ShadowPlan {
                    version,
                    sample_rate: r.policy.shadow_sample_rate.clamp(0.0, 1.0),
                    duration_tolerance: r.policy.shadow_duration_tolerance.max(0.0),
                });
            Ok((Some(r.status.to_version), shadow))
        }
        _ => {
            let stable = center
                .directive_cache
                .region_graph(center.store.as_ref(), region)
                .await?;
            Ok((stable, None))
        }
    }
}

/// A shadow comparison to ask of a canary (the version still needs its artifact's
/// directive).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowPlan {
    /// The graph to compare against.
    pub version: String,
    /// Share of route requests to re-answer.
    pub sample_rate: f64,
    /// Relative duration change that counts as different.
    pub duration_tolerance: f64,
}

impl ShadowPlan {
    /// The directive, given the shadow graph's download directive.
    pub fn directive(self, graph: GraphDirective) -> ShadowDirective {
        ShadowDirective {
            graph,
            sample_rate: self.sample_rate,
            duration_tolerance: self.duration_tolerance,
        }
    }
}

/// Give up this replica's rollout leases, so another replica drives at once instead of
/// after the lease time.
async fn release_leases(center: &Center) {
    if !center.store.shared() {
        return;
    }
    for region in center.rollouts.active_regions() {
        let name = lease_name(&region);
        if let Err(err) = center.store.release(&name, &center.settings.replica).await {
            tracing::warn!(error = %err, %region, "releasing the rollout lease failed; it expires");
        }
    }
}

/// Judge due windows every `period` until `shutdown` resolves; then give up the leases.
pub async fn run(
    center: Center,
    period: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                release_leases(&center).await;
                return;
            }
            _ = every.tick() => {
                if let Err(err) = tick(&center).await {
                    tracing::warn!(error = %err, "rollout tick failed; retrying on the next");
                }
            }
        }
    }
}
