//! Graph downloads from the center: resumable (HTTP `Range` from what a cut download left
//! on disk, guarded by `If-Range` on the artifact's sha256) and verified before anything is
//! stored or served.

use std::path::{Path, PathBuf};

use edgeroute_protocol::sync::GraphDirective;
use futures::StreamExt;
use reqwest::{StatusCode, Url, header};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a download failed. The current graph stays in service whatever happens here.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The directive's URL does not resolve against the control plane's.
    #[error("bad graph URL {0:?}")]
    Url(String),
    /// The transfer failed (partition, reset, timeout); what arrived is kept for a resume.
    #[error("download interrupted")]
    Transfer(#[source] reqwest::Error),
    /// The center answered with an unexpected status.
    #[error("the control plane answered {0} to the download")]
    Status(StatusCode),
    /// The center sent something other than the artifact announced.
    #[error("the download does not match the directive: {0}")]
    Mismatch(String),
    /// The body ended before the announced size; what arrived is kept for a resume.
    #[error("download ended after {got} of {expected} bytes")]
    Incomplete {
        /// Bytes on disk.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// Local files failed.
    #[error("cannot write the download to disk")]
    Io(#[from] std::io::Error),
}

/// Where a download of `directive` is kept while it is incomplete.
pub fn part_path(dir: &Path, directive: &GraphDirective) -> PathBuf {
    // The sha256 names the file, so a partial download can only be resumed into the same
    // artifact even if a version label were reused.
    dir.join(format!("{}.part", directive.sha256))
}

/// Download the artifact of `directive` into `dir`, resuming a partial file, and return its
/// verified bytes. `token` is sent only to the control plane's own origin.
pub async fn fetch(
    client: &reqwest::Client,
    base: &Url,
    token: Option<&str>,
    dir: &Path,
    directive: &GraphDirective,
) -> Result<Vec<u8>, DownloadError> {
    if directive.sha256.len() != 64 || !directive.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DownloadError::Mismatch(format!(
            "sha256 {:?} is not 64 hex digits",
            directive.sha256
        )));
    }
    let url = base
        .join(&directive.url)
        .map_err(|_| DownloadError::Url(directive.url.clone()))?;
    tokio::fs::create_dir_all(dir).await?;
    let part = part_path(dir, directive);
    let mut have = match tokio::fs::metadata(&part).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    if have > directive.size_bytes {
        have = 0;
    }
    if have < directive.size_bytes {
        let mut request = client.get(url.clone());
        if let Some(token) = token
            && url.origin() == base.origin()
        {
            request = request.bearer_auth(token);
        }
        tracing::info!(version = %directive.version, from_byte = have, size = directive.size_bytes, "downloading graph");
        if have > 0 {
            request = request
                .header(header::RANGE, format!("bytes={have}-"))
                .header(header::IF_RANGE, format!("\"{}\"", directive.sha256));
        }
        let response = request.send().await.map_err(DownloadError::Transfer)?;
        let append = match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let start = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(s, _)| s.parse::<u64>().ok());
                if start != Some(have) {
                    return Err(DownloadError::Mismatch(format!(
                        "asked for bytes from {have}, got range starting at {start:?}"
                    )));
                }
                true
            }
            StatusCode::OK => false,
            status => return Err(DownloadError::Status(status)),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part)
            .await?;
        let mut written = if append { have } else { 0 };
        let mut stream = response.bytes_stream();
        let outcome = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(DownloadError::Transfer)?;
                written += chunk.len() as u64;
                if written > directive.size_bytes {
                    return Err(DownloadError::Mismatch(format!(
                        "more than the announced {} bytes",
                        directive.size_bytes
                    )));
                }
                file.write_all(&chunk).await?;
            }
            Ok(())
        }
        .await;
        // Keep what arrived, even after a cut: the next attempt resumes from it.
        file.flush().await?;
        file.sync_data().await?;
        if outcome.is_err() {
            tracing::info!(version = %directive.version, kept_bytes = written, "graph download cut; kept for a resume");
        }
        if let Err(e) = outcome {
            if matches!(e, DownloadError::Mismatch(_)) {
                let _ = tokio::fs::remove_file(&part).await;
            }
            return Err(e);
        }
        if written != directive.size_bytes {
            // The body ended early without a transport error: keep it and resume later.
            return Err(DownloadError::Incomplete {
                got: written,
                expected: directive.size_bytes,
            });
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(directive.size_bytes).unwrap_or(0));
    tokio::fs::File::open(&part)
        .await?
        .read_to_end(&mut bytes)
        .await?;
    let (sha, bytes) = tokio::task::spawn_blocking(move || {
        let sha = hex::encode(Sha256::digest(&bytes));
        (sha, bytes)
    })
    .await
    .map_err(|e| DownloadError::Io(std::io::Error::other(e)))?;
    // Verified or not, the file is done with: a mismatch must start from scratch.
    let _ = tokio::fs::remove_file(&part).await;
    if !sha.eq_ignore_ascii_case(&directive.sha256) {
        return Err(DownloadError::Mismatch(format!(
            "sha256 is {sha}, the directive says {}",
            directive.sha256
        )));
    }
    Ok(bytes)
}
