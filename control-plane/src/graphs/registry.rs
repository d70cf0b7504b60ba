//! The graph registry: artifacts stored as files under `<data-dir>/graphs/`, verified before
//! they are listed, served to agents with HTTP range support so a cut download resumes.
//!
//! A version is immutable once registered: uploading other bytes under the same version is
//! a conflict, so an agent that resumes a download can never splice two artifacts.

use std::{
    io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::body::Body;
use edgeroute_engine::Graph;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::sync::store::GraphMeta;

/// Registry failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The version label is not allowed.
    #[error(
        "invalid graph version {0:?}: use 1 to 128 characters from A-Z a-z 0-9 . _ - and do not start with a dot"
    )]
    InvalidVersion(String),
    /// The upload is larger than allowed.
    #[error("the artifact is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// The upload is not a valid graph artifact.
    #[error("not a valid graph artifact: {0}")]
    Invalid(String),
    /// The client's body stream failed.
    #[error("the upload was interrupted")]
    Interrupted,
    /// Reading or writing the registry's files failed.
    #[error("registry storage failed")]
    Io(#[from] io::Error),
}

/// Whether `version` is a safe, unambiguous label (it becomes a file name).
pub fn valid_version(version: &str) -> bool {
    (1..=128).contains(&version.len())
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Artifact files of the registry.
#[derive(Debug, Clone)]
pub struct GraphRegistry {
    dir: PathBuf,
}

impl GraphRegistry {
    /// Open (creating) the registry directory, and remove uploads a crash left half-written.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "part") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The file of a registered version.
    pub fn path(&self, version: &str) -> Result<PathBuf, RegistryError> {
        if !valid_version(version) {
            return Err(RegistryError::InvalidVersion(version.to_owned()));
        }
        Ok(self.dir.join(format!("{version}.graph")))
    }

    /// Receive an upload: stream it to a temporary file while hashing it and verify that it
    /// loads as a graph. Nothing is registered yet: [`Received::commit`] moves it into
    /// place, and the caller then records it in the store, which is what lists it.
    pub async fn receive<S, E>(
        &self,
        version: &str,
        mut body: S,
        max_bytes: u64,
    ) -> Result<Received, RegistryError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    {
        let target = self.path(version)?;
        let part = self.dir.join(format!(
            "{version}.{}.part",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let result = async {
            let mut file = tokio::fs::File::create(&part).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|_| RegistryError::Interrupted)?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(RegistryError::TooLarge(max_bytes));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            drop(file);
            let sha256 = hex::encode(hasher.finalize());
            let path = part.clone();
            let label = version.to_owned();
            let meta = tokio::task::spawn_blocking(move || -> Result<_, RegistryError> {
                let bytes = std::fs::read(&path)?;
                let graph = Graph::from_artifact(&bytes)
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                let info = graph.info();
                // Agents report the version written in the artifact: one name everywhere.
                if info.version != label {
                    return Err(RegistryError::Invalid(format!(
                        "the artifact's own version is {:?}; register it under that name",
                        info.version
                    )));
                }
                Ok((info.node_count as u64, info.bbox))
            })
            .await
            .map_err(|e| RegistryError::Io(io::Error::other(e)))??;
            Ok(GraphMeta {
                version: version.to_owned(),
                sha256,
                size_bytes: size,
                uploaded_at_ms: now_ms(),
                node_count: meta.0,
                bbox: meta.1,
            })
        }
        .await;
        match result {
            Ok(meta) => Ok(Received { meta, part, target }),
            Err(e) => {
                // Best effort: a leftover .part is removed at the next start anyway.
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }
}

/// A verified upload, not yet in place.
#[derive(Debug)]
pub struct Received {
    /// What it is.
    pub meta: GraphMeta,
    part: PathBuf,
    target: PathBuf,
}

impl Received {
    /// Move it into place (atomically: a reader sees the old file or the whole new one).
    pub async fn commit(self) -> Result<GraphMeta, RegistryError> {
        tokio::fs::rename(&self.part, &self.target).await?;
        Ok(self.meta)
    }

    /// Throw it away.
    pub async fn discard(self) {
        // Best effort: a leftover .part is removed at the next start anyway.
        let _ = tokio::fs::remove_file(&self.part).await;
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// A satisfiable byte range of a `Range` header, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range (or one we ignore, as RFC 9110 allows): the whole file.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Outside the file: 416.
    Unsatisfiable,
}

/// Parse a single-range `Range: bytes=...` header against a file of `size` bytes.
/// Multi-range requests are answered with the whole file, which RFC 9110 permits.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // A suffix: the last N bytes.
        match last.parse::<u64>() {
            Ok(0) | Err(_) => return RangeRequest::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return RangeRequest::Full;
        };
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                _ => return RangeRequest::Full,
            }
        };
        (start, end)
    };
    if size == 0 || range.0 >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial {
        start: range.0,
        end: range.1,
    }
}

/// A body streaming `len` bytes of `file` from its current position.
pub fn file_body(file: tokio::fs::File, len: u64) -> Body {
    use tokio::io::AsyncReadExt;
    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(len),
        64 * 1024,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_could_escape_the_directory_are_refused() {
        for good in ["v1", "monaco-2026.12.02", "a_b"] {
            assert!(valid_version(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a b",
            ".hidden",
            &"x".repeat(129),
        ] {
            assert!(!valid_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=4-"), 10),
            Partial { start: 4, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=2-5"), 10),
            Partial { start: 2, end: 5 }
        );
        assert_eq!(
            parse_range(Some("bytes=2-50"), 10),
            Partial { start: 2, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Partial { start: 7, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=x-"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
