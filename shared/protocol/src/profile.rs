//! Routing profile names, one rule for the agent (which keeps each extra profile's graph in
//! a file named after it) and the center (which hands profiles out through directives).

/// The profile names that always mean the default graph (OSRM clients say `driving`).
pub const DEFAULT_ALIASES: [&str; 2] = ["car", "driving"];

/// Whether `name` names the default graph.
pub fn is_default(name: &str) -> bool {
    DEFAULT_ALIASES.contains(&name)
}

/// Whether `name` can name an extra profile: 1 to 32 of `a-z`, `0-9`, `_`, `-`, and not one
/// of the [`DEFAULT_ALIASES`]. It becomes a file name on the agent, so nothing else is
/// allowed.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !is_default(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_safe_file_names_and_not_the_default_aliases() {
        for ok in ["truck", "truck-12t", "van_2", "a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "car",
            "driving",
            "Truck",
            "../x",
            "a/b",
            "x.graph",
            &"t".repeat(33),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(is_default("driving"));
        assert!(!is_default("truck"));
    }
}
