//! The shared data set beside the checkout (`../shared/data`: the Porto extract, the VRP
//! benchmark instances), and the one policy for tests that need it.
//!
//! A developer without the data gets a visible notice and the test skips; CI sets
//! `EDGEROUTE_REQUIRE_DATA=1`, under which a missing file fails the test instead of letting it
//! pass silently.

use std::path::{Path, PathBuf};

/// The environment variable that turns a missing data file from a skip into a failure.
pub const REQUIRE_DATA_VAR: &str = "EDGEROUTE_REQUIRE_DATA";

/// The shared data directory, `../shared/data` beside the repository root.
pub fn shared_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// `relative` (a file or directory) under the shared data directory, if it exists.
///
/// When it is missing, prints a notice and returns `None`, so the caller returns early; with
/// `EDGEROUTE_REQUIRE_DATA=1` in the environment it panics instead, naming the path.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let required = std::env::var_os(REQUIRE_DATA_VAR).is_some_and(|v| v == "1");
    existing_or_skip(shared_data_dir().join(relative), required)
}

/// `path` if it exists; otherwise a panic when `required`, else a notice and `None`.
fn existing_or_skip(path: PathBuf, required: bool) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if required {
        panic!(
            "{} not found, and {REQUIRE_DATA_VAR}=1 forbids skipping: put the shared data set \
             beside the checkout (../shared/data) or unset {REQUIRE_DATA_VAR}",
            path.display()
        );
    }
    eprintln!(
        "NOTICE: {} not found; test skipped (set {REQUIRE_DATA_VAR}=1 to fail instead)",
        path.display()
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_path_is_returned_whether_required_or_not() {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(existing_or_skip(here.clone(), false), Some(here.clone()));
        assert_eq!(existing_or_skip(here.clone(), true), Some(here));
    }

    #[test]
    fn a_missing_path_skips_when_not_required() {
        assert_eq!(
            existing_or_skip(PathBuf::from("/nonexistent/x"), false),
            None
        );
    }

    #[test]
    #[should_panic(expected = "EDGEROUTE_REQUIRE_DATA=1 forbids skipping")]
    fn a_missing_path_fails_when_required() {
        existing_or_skip(PathBuf::from("/nonexistent/x"), true);
    }
}
