//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Every write carries the resourceVersion that was read, so two replicas racing for the
//! lease cannot both win: the loser gets a 409 and stays a follower. As in client-go, expiry
//! of another holder's lease is judged on the local monotonic clock (how long the lease has
//! been seen unchanged), never by comparing the holder's wall-clock `renewTime` with ours.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// Lease settings of one replica.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Name of the Lease object.
    pub name: String,
    /// Namespace of the Lease object.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// How often a follower tries to acquire.
    pub retry_interval: Duration,
}

/// Acquires, renews and releases one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The other holder's lease as last seen, and when it was first seen like that.
    observed: Mutex<Option<(String, Instant)>>,
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_conflict())
}

impl LeaderElector {
    /// An elector for `settings` using `client`.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: Mutex::new(None),
        }
    }

    fn duration_s(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    fn spec_for_me(
        &self,
        now: Timestamp,
        transitions: i32,
        acquire: Option<MicroTime>,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.duration_s()),
            acquire_time: acquire.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Has another holder's lease gone unrenewed for a whole lease duration?
    fn other_expired(&self, lease: &Lease) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        let key = format!(
            "{:?}/{:?}/{:?}",
            spec.holder_identity, spec.renew_time, lease.metadata.resource_version
        );
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs);
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match &*observed {
            Some((seen, since)) if *seen == key => since.elapsed() >= duration,
            _ => {
                *observed = Some((key, Instant::now()));
                false
            }
        }
    }

    /// One election round: creates, renews or takes over the lease. Returns whether this
    /// replica holds it afterwards; losing a race is `Ok(false)`, not an error.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec_for_me(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == Some(self.settings.identity.as_str()) {
            self.spec_for_me(now, transitions, spec.acquire_time.clone())
        } else if holder.is_none() || self.other_expired(&lease) {
            debug!(previous = ?holder, "taking over the lease");
            self.spec_for_me(now, transitions + 1, None)
        } else {
            return Ok(false);
        };
        let mut next = lease;
        next.spec = Some(new_spec);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease, or `stop` resolves (then returns false).
    pub async fn acquire(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(identity = %self.settings.identity, "acquired the leader lease");
                    return true;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election round failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_interval) => {}
                changed = stop.changed() => {
                    // The sender is gone: nobody can ask us to stop, nor keep us running.
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    /// Renews the lease until it is lost (another holder, or no successful renewal within
    /// two thirds of the lease duration, so we stop before a follower may take over).
    pub async fn hold(&self) {
        let deadline = self.settings.lease_duration * 2 / 3;
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_interval).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    warn!("the leader lease was taken by another replica");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "renewing the leader lease failed");
                    if last_renewed.elapsed() >= deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (on shutdown) so a follower need not wait for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        if let Err(e) = self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "releasing the leader lease failed");
        }
    }
}
