//! The graphs of a dev fleet: built once per profile from the map, reused while the map is
//! unchanged, registered in the in-process center as the region's graph (the car) and its
//! extra profiles' graphs (`--profiles car,truck`), and the places the agents stand on it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use edgeroute_engine::{BuildOptions, Coord, Graph, Profile, TruckDimensions};
use edgeroute_protocol::sync::Location;
use sha2::{Digest, Sha256};

use crate::{serve::Center, sync::store::GraphMeta};

/// The profiles `dev` can build: the car (the default graph) and the truck (a 7.5 t delivery
/// truck, the engine's default dimensions).
pub const BUILDABLE: [&str; 2] = ["car", "truck"];

/// The engine profile `dev` builds for `name` (one of [`BUILDABLE`]).
pub fn profile(name: &str) -> Option<Profile> {
    match name {
        "car" => Some(Profile::car()),
        "truck" => Some(Profile::truck(TruckDimensions::default())),
        _ => None,
    }
}

/// The car artifact of `map`, under `dir`: see [`artifact_for`].
pub fn artifact(map: &Path, region: &str, dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    artifact_for(map, region, dir, "car")
}

/// The artifact of `map` for profile `name` (one of [`BUILDABLE`]), under `dir`: reused when
/// the stamp beside it records the same map sha256 (and so the same version label), built
/// otherwise. Returns its path and version.
pub fn artifact_for(
    map: &Path,
    region: &str,
    dir: &Path,
    name: &str,
) -> anyhow::Result<(PathBuf, String)> {
    let Some(profile) = profile(name) else {
        anyhow::bail!("dev cannot build the {name:?} profile: use one of {BUILDABLE:?}");
    };
    let map_sha256 = file_sha256(map)?;
    let version = match name {
        "car" => version_label(region, &map_sha256),
        other => version_label(&format!("{region}-{other}"), &map_sha256),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{version}.graph"));
    let stamp = dir.join(format!("{version}.map-sha256"));
    // The stamp is written after the artifact, so a build cut short is never reused.
    let reusable =
        path.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == map_sha256);
    if reusable {
        tracing::info!(%version, path = %path.display(), "map unchanged: reusing its graph");
        return Ok((path, version));
    }
    tracing::info!(map = %map.display(), %version, profile = name, "building the graph (once per map)");
    let started = std::time::Instant::now();
    let graph = Graph::from_osm_file(
        map,
        &profile,
        &BuildOptions {
            version: version.clone(),
            progress: None,
        },
    )
    .with_context(|| format!("cannot build a graph from {}", map.display()))?;
    let part = dir.join(format!("{version}.graph.part"));
    graph
        .write_artifact(&part)
        .with_context(|| format!("cannot write {}", part.display()))?;
    std::fs::rename(&part, &path).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(&stamp, &map_sha256)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    tracing::info!(
        %version,
        seconds = started.elapsed().as_secs_f64(),
        nodes = graph.info().node_count,
        "graph built"
    );
    Ok((path, version))
}

/// `<region>-<first 12 hex digits of the map's sha256>-f<artifact format>`: another map, or
/// an engine writing another artifact format, gets another label, so the registry (where a
/// version is immutable) never sees two artifacts under one name.
pub fn version_label(region: &str, map_sha256: &str) -> String {
    let short = map_sha256.get(..12).unwrap_or(map_sha256);
    format!(
        "{region}-{short}-f{}",
        edgeroute_engine::artifact::FORMAT_VERSION
    )
}

fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Register the artifact in the center's registry (unless that version is registered
/// already) and make it `region`'s graph. Returns what the registry holds.
pub async fn register(
    center: &Center,
    path: &Path,
    version: &str,
    region: &str,
) -> anyhow::Result<GraphMeta> {
    let meta = put_in_registry(center, path, version).await?;
    center
        .store
        .set_region_graph(region, version)
        .await
        .context("cannot set the region's graph")?;
    Ok(meta)
}

/// Register the artifact of an extra profile and make it that profile's graph in `region`,
/// which every agent of the region then downloads through sync.
pub async fn register_profile(
    center: &Center,
    path: &Path,
    version: &str,
    region: &str,
    profile: &str,
) -> anyhow::Result<GraphMeta> {
    let meta = put_in_registry(center, path, version).await?;
    crate::graphs::profiles::set_region_profile(
        center.store.as_ref(),
        region,
        profile,
        Some(version),
    )
    .await
    .with_context(|| format!("cannot set the region's {profile} graph"))?;
    Ok(meta)
}

async fn put_in_registry(center: &Center, path: &Path, version: &str) -> anyhow::Result<GraphMeta> {
    let registered = center
        .store
        .graph(version)
        .await
        .context("cannot read the graph registry")?;
    let meta = match registered {
        // Same map, same format: the registered bytes serve as well as a rebuild's.
        Some(meta) => meta,
        None => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            let received = center
                .registry
                .receive(
                    version,
                    tokio_util::io::ReaderStream::new(file),
                    center.settings.max_graph_bytes,
                )
                .await
                .with_context(|| format!("the registry refused {}", path.display()))?;
            let meta = received
                .commit()
                .await
                .context("cannot store the artifact")?;
            center
                .store
                .put_graph(meta.clone())
                .await
                .context("cannot record the artifact")?;
            meta
        }
    };
    Ok(meta)
}

/// `n` places spread over `bbox` (`[min_lon, min_lat, max_lon, max_lat]`): the centres of a
/// near-square grid over the box shrunk by a fifth on each side, so no agent sits on the
/// map's edge and any two are apart.
pub fn spread(bbox: [f64; 4], n: usize) -> Vec<Location> {
    let [min_lon, min_lat, max_lon, max_lat] = bbox;
    let (w, h) = (max_lon - min_lon, max_lat - min_lat);
    let (x0, y0, w, h) = (min_lon + w * 0.2, min_lat + h * 0.2, w * 0.6, h * 0.6);
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    (0..n)
        .map(|i| {
            let (col, row) = (i % cols, i / cols);
            Location {
                lon: x0 + w * (col as f64 + 0.5) / cols as f64,
                lat: y0 + h * (row as f64 + 0.5) / rows as f64,
            }
        })
        .collect()
}

/// [`spread`], each place moved onto the nearest road of the graph (within 5 km; a place
/// with no road near stays where it is), so a route between two agents' places exists.
pub fn places_on_roads(path: &Path, bbox: [f64; 4], n: usize) -> anyhow::Result<Vec<Location>> {
    let graph =
        Graph::read_artifact(path).with_context(|| format!("cannot load {}", path.display()))?;
    Ok(spread(bbox, n)
        .into_iter()
        .map(|at| {
            Coord::new(at.lon, at.lat)
                .ok()
                .and_then(|c| graph.snap(c, 5_000.0).ok())
                .map_or(at, |snap| Location {
                    lat: snap.location.lat,
                    lon: snap.location.lon,
                })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONACO: [f64; 4] = [7.409, 43.724, 7.439, 43.752];

    #[test]
    fn places_are_inside_the_box_and_apart() {
        for n in [1, 2, 3, 4, 5, 9, 10, 50] {
            let places = spread(MONACO, n);
            assert_eq!(places.len(), n);
            for p in &places {
                assert!(MONACO[0] < p.lon && p.lon < MONACO[2], "{p:?}");
                assert!(MONACO[1] < p.lat && p.lat < MONACO[3], "{p:?}");
            }
            for (i, a) in places.iter().enumerate() {
                for b in &places[i + 1..] {
                    assert!(
                        (a.lon - b.lon).abs() + (a.lat - b.lat).abs() > 1e-4,
                        "{n} places: {a:?} and {b:?} coincide"
                    );
                }
            }
        }
        assert!(spread(MONACO, 0).is_empty());
    }

    #[test]
    fn the_version_follows_the_map_content() {
        let a = version_label("monaco", &"ab".repeat(32));
        assert_eq!(
            a,
            format!(
                "monaco-abababababab-f{}",
                edgeroute_engine::artifact::FORMAT_VERSION
            )
        );
        assert_ne!(a, version_label("monaco", &"cd".repeat(32)));
        assert!(crate::graphs::registry::valid_version(&a));
    }
}
