//! The graphs of the profiles an agent serves beside its default one (issue 15): a truck
//! graph next to the car graph, say. `/route/v1/truck/...` answers on the truck graph,
//! `/route/v1/car/...` and `/route/v1/driving/...` on the default graph, which is the one
//! [`super::GraphService`] manages and the control plane's directives move.
//!
//! Each extra profile's artifact is kept as `<data dir>/profiles/<name>.graph`, written
//! atomically (temporary file, fsync, rename) before it is served, and loaded again at
//! start, so an upload or a download survives a restart.
//!
//! A profile comes from an upload (`PUT /admin/graph?profile=`), a `--profile-graph` flag,
//! or the control plane's directives (`profile_graphs`). A directed one is marked by an
//! empty `<name>.directed` file beside its graph: when a later directive no longer names it,
//! the sync loop removes it ([`Profiles::remove`]). Profiles installed by hand carry no mark
//! and are never removed by a directive, so a center that knows nothing of profiles (its
//! directives have none) leaves them alone.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use edgeroute_engine::Graph;

use super::Error;

pub use edgeroute_protocol::profile::{DEFAULT_ALIASES, is_default, valid_name};

/// The extra profiles' graphs, swapped atomically like the default one.
#[derive(Debug)]
pub struct Profiles {
    graphs: ArcSwap<BTreeMap<String, Arc<Graph>>>,
    dir: PathBuf,
    changes: std::sync::Mutex<()>,
}

impl Profiles {
    /// Profiles kept in `dir` (nothing is read until [`Profiles::load_dir`]).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            graphs: ArcSwap::default(),
            dir,
            changes: std::sync::Mutex::new(()),
        }
    }

    /// The graph of the extra profile `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Graph>> {
        self.graphs.load().get(name).cloned()
    }

    /// Every extra profile and its graph, by name.
    pub fn all(&self) -> Vec<(String, Arc<Graph>)> {
        self.graphs
            .load()
            .iter()
            .map(|(n, g)| (n.clone(), g.clone()))
            .collect()
    }

    /// Load every `<name>.graph` kept in the directory that is not served yet (blocking;
    /// returns the names served). A file that fails verification is an error: serving
    /// without a profile the operator installed would answer its clients with "unknown
    /// profile".
    pub fn load_dir(&self) -> Result<Vec<String>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut loaded = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".graph"))
                .filter(|n| valid_name(n))
            else {
                continue;
            };
            if self.get(name).is_some() {
                // Installed from a flag a moment ago.
                loaded.push(name.to_owned());
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let graph = Graph::from_artifact(&bytes).map_err(Error::InvalidArtifact)?;
            self.swap_in(name, Arc::new(graph));
            loaded.push(name.to_owned());
        }
        Ok(loaded)
    }

    /// Verify an artifact, keep it as profile `name` and serve it (blocking). The artifact
    /// must have been built for that profile (or by hand, `custom`): a car graph installed
    /// as `truck` would send trucks under low bridges. A profile installed this way is the
    /// operator's: directives do not remove it.
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<Arc<Graph>, Error> {
        self.install_as(name, bytes, false)
    }

    /// [`Profiles::install`] for a control plane directive: the profile is marked as
    /// directed, and a later directive that no longer names it removes it.
    pub fn install_directed(&self, name: &str, bytes: &[u8]) -> Result<Arc<Graph>, Error> {
        self.install_as(name, bytes, true)
    }

    /// The profiles installed by directives, by name.
    pub fn directed(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| self.marker(name).is_file())
            .collect()
    }

    /// Stop serving profile `name` and delete its files (blocking); returns whether it was
    /// served. Requests already holding its graph finish on it.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        if !valid_name(name) {
            return Err(Error::ProfileName(name.to_owned()));
        }
        let _guard = self.changes.lock().map_err(|_| Error::Poisoned)?;
        // Graph first: a crash in between leaves a mark without a graph, which nothing reads.
        for path in [self.dir.join(format!("{name}.graph")), self.marker(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Read { path, source }),
            }
        }
        let mut removed = false;
        self.graphs.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            removed = next.remove(name).is_some();
            next
        });
        if removed {
            tracing::info!(profile = name, "profile graph removed");
        }
        Ok(removed)
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.directed"))
    }

    fn install_as(&self, name: &str, bytes: &[u8], directed: bool) -> Result<Arc<Graph>, Error> {
        if !valid_name(name) {
            return Err(Error::ProfileName(name.to_owned()));
        }
        let graph = Graph::from_artifact(bytes).map_err(Error::InvalidArtifact)?;
        let built_for = &graph.info().profile;
        if built_for != name && built_for != "custom" {
            return Err(Error::ProfileMismatch {
                name: name.to_owned(),
                built_for: built_for.clone(),
            });
        }
        let _guard = self.changes.lock().map_err(|_| Error::Poisoned)?;
        write_atomically(&self.dir, &format!("{name}.graph"), bytes)?;
        let marker = self.marker(name);
        let marked = if directed {
            std::fs::write(&marker, b"")
        } else {
            std::fs::remove_file(&marker).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        };
        marked.map_err(|source| Error::Read {
            path: marker,
            source,
        })?;
        let graph = Arc::new(graph);
        self.swap_in(name, graph.clone());
        tracing::info!(
            profile = name,
            directed,
            version = %graph.info().version,
            sha256 = %graph.sha256(),
            "profile graph installed"
        );
        Ok(graph)
    }

    fn swap_in(&self, name: &str, graph: Arc<Graph>) {
        self.graphs.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            next.insert(name.to_owned(), graph.clone());
            next
        });
    }
}

/// Write `bytes` to `dir/file` so that a crash leaves the old file or the new one, never a
/// mix.
fn write_atomically(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Read { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target = dir.join(file);
    let tmp = dir.join(format!("{file}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_profile_is_kept_on_disk_and_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let graph = crate::routing::shadow::tests::square("sq");
        let bytes = graph.to_artifact();
        let profiles = Profiles::new(dir.path().join("profiles"));
        assert!(profiles.load_dir().unwrap().is_empty());
        assert!(matches!(
            profiles.install("car", &bytes),
            Err(Error::ProfileName(_))
        ));
        assert!(matches!(
            profiles.install("truck", b"junk"),
            Err(Error::InvalidArtifact(_))
        ));
        profiles.install("truck", &bytes).unwrap();
        assert_eq!(profiles.get("truck").unwrap().sha256(), graph.sha256());
        let again = Profiles::new(dir.path().join("profiles"));
        assert_eq!(again.load_dir().unwrap(), ["truck"]);
        assert_eq!(again.all().len(), 1);
        assert!(again.get("van").is_none());
    }

    #[test]
    fn only_directed_profiles_are_marked_and_removal_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = crate::routing::shadow::tests::square("sq").to_artifact();
        let profiles = Profiles::new(dir.path().join("profiles"));
        profiles.install("truck", &bytes).unwrap();
        profiles.install_directed("van", &bytes).unwrap();
        assert_eq!(profiles.directed(), ["van"]);
        // An upload over a directed profile makes it the operator's again.
        profiles.install_directed("truck", &bytes).unwrap();
        assert_eq!(profiles.directed(), ["truck", "van"]);
        profiles.install("truck", &bytes).unwrap();
        assert_eq!(profiles.directed(), ["van"]);

        assert!(profiles.remove("van").unwrap());
        assert!(!profiles.remove("van").unwrap());
        assert!(profiles.get("van").is_none());
        let again = Profiles::new(dir.path().join("profiles"));
        assert_eq!(again.load_dir().unwrap(), ["truck"]);
        assert!(again.directed().is_empty());
    }
}
