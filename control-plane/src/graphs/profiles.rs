//! A region's graphs for the profiles its agents serve beside the default one (issue 15):
//! `truck` next to the car, say. The default graph keeps its own path (the region graph,
//! EdgeRegion `spec.graph`, graph rollouts); an extra profile's graph is set directly with
//! `PUT /api/v1/regions/{region}/graph?profile=truck` (or by `dev --profiles`), travels in
//! every report's directives as [`Directives::profile_graphs`], and is not rolled out by
//! canary: a new truck artifact reaches every agent of the region at its next report.
//!
//! The store has one string per region key, so the profiles of region `r` are kept as one
//! JSON object (`{"truck": "porto-truck-v1"}`) under the key `r/profiles`; region names never
//! contain `/` (Kubernetes names cannot, and the API refuses them), so the key cannot be a
//! region. Changes are serialised within this process; two replicas changing profiles of
//! the same region at the same instant could lose one change (re-issue it).
//!
//! [`Directives::profile_graphs`]: edgeroute_protocol::sync::Directives::profile_graphs

use std::collections::BTreeMap;

use edgeroute_protocol::sync::GraphDirective;

use crate::{
    serve::{Center, error::ApiError},
    sync::store::{CenterStore, Error, Result},
};

pub use edgeroute_protocol::profile::{DEFAULT_ALIASES, valid_name};

/// Whether `region` can have profiles: the key of its profiles must not be another region's.
pub fn valid_region(region: &str) -> bool {
    !region.is_empty() && !region.contains('/')
}

fn key(region: &str) -> String {
    format!("{region}/profiles")
}

/// The graph version of each extra profile of `region`, by profile name.
pub async fn region_profiles(
    store: &dyn CenterStore,
    region: &str,
) -> Result<BTreeMap<String, String>> {
    if !valid_region(region) {
        return Ok(BTreeMap::new());
    }
    parse(store.region_graph(&key(region)).await?)
}

/// [`region_profiles`] through the replica's directive cache: read for every report.
async fn cached_profiles(center: &Center, region: &str) -> Result<BTreeMap<String, String>> {
    if !valid_region(region) {
        return Ok(BTreeMap::new());
    }
    let json = center
        .directive_cache
        .region_graph(center.store.as_ref(), &key(region))
        .await?;
    parse(json)
}

fn parse(json: Option<String>) -> Result<BTreeMap<String, String>> {
    match json {
        None => Ok(BTreeMap::new()),
        Some(json) => serde_json::from_str(&json).map_err(|_| Error::Corrupt("region profiles")),
    }
}

/// Set (`Some(version)`) or remove (`None`) the graph of `profile` in `region`; returns
/// whether anything changed. The caller validates the names and that the version is
/// registered.
pub async fn set_region_profile(
    store: &dyn CenterStore,
    region: &str,
    profile: &str,
    version: Option<&str>,
) -> Result<bool> {
    static CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = CHANGES.lock().await;
    let mut profiles = region_profiles(store, region).await?;
    let changed = match version {
        Some(v) => profiles.insert(profile.to_owned(), v.to_owned()).as_deref() != Some(v),
        None => profiles.remove(profile).is_some(),
    };
    if changed {
        let json =
            serde_json::to_string(&profiles).map_err(|_| Error::Corrupt("region profiles"))?;
        store.set_region_graph(&key(region), &json).await?;
    }
    Ok(changed)
}

/// The directives' `profile_graphs` for an agent of `region`: every extra profile whose
/// version is registered (one that is not, which only a store edited by hand holds, is left
/// out rather than sent to agents that could not download it).
pub async fn directives(
    center: &Center,
    region: &str,
) -> Result<BTreeMap<String, GraphDirective>, ApiError> {
    let profiles = cached_profiles(center, region)
        .await
        .map_err(ApiError::storage)?;
    let mut out = BTreeMap::new();
    for (profile, version) in profiles {
        match crate::sync::graph_directive(center, &version).await? {
            Some(directive) => {
                out.insert(profile, directive);
            }
            None => tracing::warn!(%region, %profile, %version, "profile graph not registered"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_cannot_reach_another_regions_profiles() {
        assert!(valid_region("porto"));
        assert!(!valid_region("porto/profiles"));
        assert!(!valid_region(""));
    }

    #[tokio::test]
    async fn profiles_are_kept_per_region_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sync::sled_store::SledCenterStore::open(dir.path()).unwrap();
        assert!(region_profiles(&store, "porto").await.unwrap().is_empty());
        assert!(
            set_region_profile(&store, "porto", "truck", Some("t1"))
                .await
                .unwrap()
        );
        assert!(
            !set_region_profile(&store, "porto", "truck", Some("t1"))
                .await
                .unwrap()
        );
        assert!(
            set_region_profile(&store, "porto", "van", Some("v1"))
                .await
                .unwrap()
        );
        assert!(
            set_region_profile(&store, "monaco", "truck", Some("m1"))
                .await
                .unwrap()
        );
        let porto = region_profiles(&store, "porto").await.unwrap();
        assert_eq!(porto.get("truck").map(String::as_str), Some("t1"));
        assert_eq!(porto.len(), 2);
        // The default graph of the region is a different key.
        assert_eq!(store.region_graph("porto").await.unwrap(), None);
        assert!(
            set_region_profile(&store, "porto", "truck", None)
                .await
                .unwrap()
        );
        assert!(
            !set_region_profile(&store, "porto", "truck", None)
                .await
                .unwrap()
        );
        let porto = region_profiles(&store, "porto").await.unwrap();
        assert_eq!(porto.keys().collect::<Vec<_>>(), ["van"]);
        assert_eq!(region_profiles(&store, "monaco").await.unwrap().len(), 1);
    }
}
