//! Graph artifacts as files beside the database, one per version.
//!
//! Not in sled: sled keeps the last value it read in its page cache, and a city graph's
//! artifact is tens of megabytes read once at start, so an idle agent held a second copy of
//! its graph's bytes for nothing (19.5 MB of 99 MB live on Porto, measured with heaptrack).
//! A file is read into a buffer that is freed once decoded. The pointers saying which
//! version is active stay in sled, in the transactions that record their events.
//!
//! Writes are atomic: a temporary file, fsynced, renamed over the final name, then the
//! directory fsynced. A crash leaves either no file or the whole one (and a temporary file
//! that the next open removes). File names are the version's bytes in hex, so any version
//! label is a safe name.

use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use super::Result;

const SUFFIX: &str = ".graph";
const TEMP_PREFIX: &str = ".tmp-";

/// The directory of artifacts.
#[derive(Debug, Clone)]
pub struct Artifacts {
    dir: PathBuf,
}

impl Artifacts {
    /// Open (or create) `dir`, removing temporary files a crash left behind.
    pub fn open(dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(Self { dir })
    }

    fn path(&self, version: &str) -> PathBuf {
        self.dir
            .join(format!("{}{SUFFIX}", hex::encode(version.as_bytes())))
    }

    /// Store `bytes` as `version` (replacing it), durably.
    pub fn put(&self, version: &str, bytes: &[u8]) -> Result<()> {
        let target = self.path(version);
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{:016x}",
            hex::encode(version.as_bytes()),
            rand::random::<u64>()
        ));
        let written = (|| {
            let mut file = fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &target)?;
            sync_dir(&self.dir)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        Ok(written?)
    }

    /// The bytes of `version`, if stored.
    pub fn get(&self, version: &str) -> Result<Option<Vec<u8>>> {
        match fs::read(self.path(version)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `version` is stored.
    pub fn contains(&self, version: &str) -> Result<bool> {
        Ok(self.path(version).try_exists()?)
    }

    /// Every stored version.
    pub fn versions(&self) -> Result<BTreeSet<String>> {
        let mut versions = BTreeSet::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let Some(stem) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            // A file someone else put here is not a version, and no reason to fail.
            match hex::decode(stem)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                Some(version) => {
                    versions.insert(version);
                }
                None => tracing::warn!(file = %name, "not a graph artifact; ignored"),
            }
        }
        Ok(versions)
    }

    /// Delete `version`; whether it was stored.
    pub fn remove(&self, version: &str) -> Result<bool> {
        match fs::remove_file(self.path(version)) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Make a rename or a removal in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_under_any_version_label() {
        let dir = tempfile::tempdir().unwrap();
        let a = Artifacts::open(dir.path().join("graphs")).unwrap();
        for version in ["v1", "../etc/passwd", "porto 2026/12", "é"] {
            a.put(version, version.as_bytes()).unwrap();
            assert_eq!(a.get(version).unwrap().unwrap(), version.as_bytes());
        }
        a.put("v1", b"replaced").unwrap();
        assert_eq!(a.get("v1").unwrap().unwrap(), b"replaced");
        let versions: Vec<String> = a.versions().unwrap().into_iter().collect();
        assert_eq!(versions, ["../etc/passwd", "porto 2026/12", "v1", "é"]);
        assert!(a.remove("v1").unwrap());
        assert!(!a.remove("v1").unwrap());
        assert!(a.get("v1").unwrap().is_none());
        assert!(!a.contains("v1").unwrap() && a.contains("é").unwrap());
        // Nothing escaped the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_write_cut_short_leaves_the_old_version_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let graphs = dir.path().join("graphs");
        let a = Artifacts::open(graphs.clone()).unwrap();
        a.put("v1", b"whole").unwrap();
        // What a crash in the middle of `put` leaves: a partial temporary file.
        fs::write(graphs.join(format!("{TEMP_PREFIX}7631-0")), b"par").unwrap();
        let a = Artifacts::open(graphs.clone()).unwrap();
        assert_eq!(a.get("v1").unwrap().unwrap(), b"whole");
        assert_eq!(fs::read_dir(&graphs).unwrap().count(), 1);
        // A stray file is not a version.
        fs::write(graphs.join(format!("zz{SUFFIX}")), b"x").unwrap();
        assert_eq!(
            a.versions().unwrap().into_iter().collect::<Vec<_>>(),
            ["v1"]
        );
    }

    #[test]
    fn artifacts_an_earlier_version_kept_in_sled_move_to_files() {
        use crate::storage::{Store, sled_store::SledStore};
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let legacy = db.open_tree("graphs").unwrap();
            legacy.insert("v1", &b"one"[..]).unwrap();
            legacy.insert("v2", &b"two"[..]).unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.graph_versions().unwrap(), ["v1", "v2"]);
        assert_eq!(store.graph("v2").unwrap().unwrap(), b"two");
        drop(store);
        let db = sled::open(dir.path()).unwrap();
        assert!(
            !db.tree_names().iter().any(|n| n == &b"graphs"[..]),
            "the sled tree is gone"
        );
    }
}
