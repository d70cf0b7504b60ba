//! Which nodes of a region are canaries: a deterministic, spread and nested choice (see
//! [`super::rollout`] for how steps use it).

use std::collections::BTreeSet;

/// FNV-1a of `region/node`, finished with murmur3's 64-bit mixer: the canary order. The
/// mixer matters: plain FNV keeps names that differ in their last characters (`edge-01`,
/// `edge-02`) in name order. Salting with the region keeps two regions from canarying the
/// same rack.
fn spread_key(region: &str, node: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in region.bytes().chain([b'/']).chain(node.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// How many of `total` nodes a step of `percent` puts on the new version: the ceiling of
/// the share, at least one (when there is a node), at most all.
pub fn canary_count(total: usize, percent: u8) -> usize {
    if total == 0 {
        return 0;
    }
    (total * usize::from(percent.min(100)))
        .div_ceil(100)
        .clamp(1, total)
}

/// The canary nodes of a step: the `keep` nodes still in the region (in canary order, cut
/// to the step's count), then more nodes in canary order until the step's count is reached.
/// Sorted by name.
pub fn choose_canaries(
    region: &str,
    nodes: &[String],
    keep: &[String],
    percent: u8,
) -> Vec<String> {
    let want = canary_count(nodes.len(), percent);
    let mut ordered: Vec<&String> = nodes.iter().collect();
    ordered.sort_by_key(|n| (spread_key(region, n), n.as_str()));
    let keep: BTreeSet<&str> = keep.iter().map(String::as_str).collect();
    let chosen: BTreeSet<&String> = ordered
        .iter()
        .filter(|n| keep.contains(n.as_str()))
        .chain(ordered.iter().filter(|n| !keep.contains(n.as_str())))
        .take(want)
        .copied()
        .collect();
    chosen.into_iter().cloned().collect()
}
