//! Receiving an artifact as a stream, without holding it in memory: the header is checked
//! from the first bytes (so junk is refused before the rest is read), then the payload is
//! written to a file in the spool directory while its digest is computed, and refused if
//! it is longer or shorter than the header says or does not match the header's digest.
//! Only an artifact that passed all of that is read back and decoded.
//!
//! The checks repeat the first ones `edgeroute_engine` makes on load (see
//! `edgeroute_engine::artifact`): magic, format version, length, payload digest. The
//! engine still makes them, and the rest, when the spooled file is decoded.

use std::path::{Path, PathBuf};

use edgeroute_engine::{
    ArtifactError,
    artifact::{FORMAT_VERSION, MAGIC},
};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Magic, format version, payload length: enough to refuse junk and oversized artifacts.
const PREFIX_LEN: usize = 8 + 4 + 8;
/// The prefix and the payload's sha256.
const HEADER_LEN: usize = PREFIX_LEN + 32;

/// Why a stream was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The bytes are not an artifact this build reads, or do not match their header.
    #[error("invalid graph artifact")]
    Invalid(#[source] ArtifactError),
    /// The header announces an artifact larger than allowed.
    #[error("the artifact is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Size from the header.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The stream failed (the client went away, say).
    #[error("reading the artifact failed")]
    Stream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The spool file could not be written.
    #[error("cannot write the spool file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A verified artifact in a spool file, deleted when dropped.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    size: u64,
}

impl Spooled {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        // Also runs when the request is cancelled mid-stream; an unlink is short enough not
        // to matter to the runtime thread it runs on.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Delete what uploads cut by a crash left in `dir` (blocking; call at start, before any
/// upload can be in progress).
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("upload-") && name.ends_with(".part") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %name, "removed an upload cut by a restart"),
                Err(err) => {
                    tracing::warn!(file = %name, error = %err, "cannot remove a stale upload")
                }
            }
        }
    }
}

/// Check the header of the artifact `stream` carries, then write it to a new file in `dir`,
/// verifying its length and payload digest. `max_bytes` bounds the whole artifact.
pub async fn spool<S, B, E>(stream: S, dir: &Path, max_bytes: u64) -> Result<Spooled, SpoolError>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut header = Vec::with_capacity(HEADER_LEN);
    let mut rest: Option<B> = None;
    let mut rest_at = 0;
    // Collect the header, checking each part as soon as it is in.
    while header.len() < HEADER_LEN {
        let Some(chunk) = stream.next().await else {
            return Err(check_prefix(&header, max_bytes)
                .err()
                .unwrap_or(SpoolError::Invalid(ArtifactError::Truncated {
                    expected: HEADER_LEN as u64,
                    found: header.len() as u64,
                })));
        };
        let chunk = chunk.map_err(|e| SpoolError::Stream(e.into()))?;
        let bytes = chunk.as_ref();
        let take = bytes.len().min(HEADER_LEN - header.len());
        header.extend_from_slice(&bytes[..take]);
        check_prefix(&header, max_bytes)?;
        if take < bytes.len() {
            rest_at = take;
            rest = Some(chunk);
        }
    }
    let payload_len = check_prefix(&header, max_bytes)?.unwrap_or_default();
    let size = HEADER_LEN as u64 + payload_len;

    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        })?;
    let spooled = Spooled {
        path: dir.join(format!("upload-{:016x}.part", rand::random::<u64>())),
        size,
    };
    let io = |source| SpoolError::Io {
        path: spooled.path.clone(),
        source,
    };
    let file = tokio::fs::File::create(&spooled.path).await.map_err(io)?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    file.write_all(&header).await.map_err(io)?;
    let mut digest = Sha256::new();
    let mut received = 0u64;
    let mut write = async |bytes: &[u8]| -> Result<(), SpoolError> {
        received += bytes.len() as u64;
        if received > payload_len {
            return Err(SpoolError::Invalid(ArtifactError::Malformed(
                "trailing bytes after payload".into(),
            )));
        }
        digest.update(bytes);
        file.write_all(bytes).await.map_err(io)
    };
    if let Some(rest) = &rest {
        write(&rest.as_ref()[rest_at..]).await?;
    }
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| SpoolError::Stream(e.into()))?;
        write(chunk.as_ref()).await?;
    }
    if received < payload_len {
        return Err(SpoolError::Invalid(ArtifactError::Truncated {
            expected: size,
            found: HEADER_LEN as u64 + received,
        }));
    }
    if digest.finalize().as_slice() != &header[PREFIX_LEN..HEADER_LEN] {
        return Err(SpoolError::Invalid(ArtifactError::ChecksumMismatch));
    }
    file.flush().await.map_err(io)?;
    Ok(spooled)
}

/// Check as much of the prefix as `header` holds; once it holds all of it, the payload
/// length it announces.
fn check_prefix(header: &[u8], max_bytes: u64) -> Result<Option<u64>, SpoolError> {
    let magic = header.len().min(MAGIC.len());
    if header[..magic] != MAGIC[..magic] {
        return Err(SpoolError::Invalid(ArtifactError::BadMagic));
    }
    let Some(version) = header.get(8..12) else {
        return Ok(None);
    };
    let mut le = [0u8; 4];
    le.copy_from_slice(version);
    let found = u32::from_le_bytes(le);
    if found != FORMAT_VERSION {
        return Err(SpoolError::Invalid(ArtifactError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        }));
    }
    let Some(len) = header.get(12..PREFIX_LEN) else {
        return Ok(None);
    };
    let mut le = [0u8; 8];
    le.copy_from_slice(len);
    let payload_len = u64::from_le_bytes(le);
    let size = payload_len.saturating_add(HEADER_LEN as u64);
    if size > max_bytes {
        return Err(SpoolError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    Ok(Some(payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_uploads_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("upload-00000000000000ab.part"), b"cut").unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"other").unwrap();
        remove_stale(dir.path());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["keep.txt"]);
        remove_stale(&dir.path().join("missing"));
    }

    fn artifact(payload: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Spool `chunks` into a fresh directory, returned with the outcome so it outlives the
    /// spooled file.
    async fn spool_chunks(
        chunks: Vec<Vec<u8>>,
        max: u64,
    ) -> (tempfile::TempDir, Result<Spooled, SpoolError>) {
        let dir = tempfile::tempdir().unwrap();
        let stream =
            futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
        let outcome = spool(stream, dir.path(), max).await;
        (dir, outcome)
    }

    async fn run(chunks: Vec<Vec<u8>>, max: u64) -> Result<Spooled, SpoolError> {
        spool_chunks(chunks, max).await.1
    }

    #[tokio::test]
    async fn a_good_artifact_is_spooled_in_any_chunking() {
        let bytes = artifact(b"payload of some length");
        for size in [1, 3, 19, 20, 52, 53, 1000] {
            let chunks = bytes.chunks(size).map(<[u8]>::to_vec).collect();
            let (_dir, spooled) = spool_chunks(chunks, 1 << 20).await;
            let spooled = spooled.unwrap();
            assert_eq!(std::fs::read(spooled.path()).unwrap(), bytes);
            let path = spooled.path().to_owned();
            drop(spooled);
            assert!(!path.exists(), "the spool file goes with its handle");
        }
    }

    #[tokio::test]
    async fn junk_and_bad_headers_are_refused_from_the_first_bytes() {
        let err = run(vec![b"PK\x03\x04".to_vec()], 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::Invalid(ArtifactError::BadMagic)));
        let mut future = artifact(b"x");
        future[8] = 9;
        let err = run(vec![future[..12].to_vec()], 1 << 20).await.unwrap_err();
        assert!(matches!(
            err,
            SpoolError::Invalid(ArtifactError::UnsupportedVersion { found: 9, .. })
        ));
        let big = artifact(&[0; 100]);
        let err = run(vec![big[..20].to_vec()], 100).await.unwrap_err();
        assert!(matches!(
            err,
            SpoolError::TooLarge {
                size: 152,
                max: 100
            }
        ));
    }

    #[tokio::test]
    async fn length_and_digest_are_checked() {
        let bytes = artifact(b"payload");
        let err = run(vec![bytes[..bytes.len() - 1].to_vec()], 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            SpoolError::Invalid(ArtifactError::Truncated { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        let err = run(vec![longer], 1 << 20).await.unwrap_err();
        assert!(matches!(
            err,
            SpoolError::Invalid(ArtifactError::Malformed(_))
        ));
        let mut corrupt = bytes;
        *corrupt.last_mut().unwrap() ^= 1;
        let err = run(vec![corrupt], 1 << 20).await.unwrap_err();
        assert!(matches!(
            err,
            SpoolError::Invalid(ArtifactError::ChecksumMismatch)
        ));
    }
}
