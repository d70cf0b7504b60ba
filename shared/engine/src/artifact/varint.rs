//! OSM node ids as delta-coded zigzag varints.

use super::malformed;
use crate::Result;
use crate::error::ArtifactError;

/// OSM node ids as zigzag varints of the difference to the previous id: the nodes of a way
/// mostly have close ids, so a point takes one to three bytes instead of eight (Porto's
/// artifact is 2 MiB smaller).
pub(super) fn delta_varints(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut prev = 0i64;
    for &id in ids {
        let d = id.wrapping_sub(prev);
        let mut z = ((d << 1) ^ (d >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        prev = id;
    }
    out
}

/// Reverses [`delta_varints`]: exactly `n` ids that use exactly all of `bytes`.
pub(super) fn undelta_varints(bytes: &[u8], n: usize) -> Result<Vec<i64>, ArtifactError> {
    let bad = || malformed("OSM node ids are not valid varints");
    let mut ids = Vec::with_capacity(n);
    let mut at = 0;
    let mut prev = 0i64;
    for _ in 0..n {
        let mut z = 0u64;
        let mut shift = 0;
        loop {
            let b = *bytes.get(at).ok_or_else(bad)?;
            at += 1;
            if shift > 63 {
                return Err(bad());
            }
            z |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        prev = prev.wrapping_add(d);
        ids.push(prev);
    }
    if at != bytes.len() {
        return Err(bad());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_through_delta_varints() {
        let ids = [
            0,
            1,
            25_687_435,
            25_687_436,
            3,
            -7,
            i64::MAX,
            i64::MIN,
            12_345_678_901,
        ];
        let bytes = delta_varints(&ids);
        assert_eq!(undelta_varints(&bytes, ids.len()).unwrap(), ids);
        assert!(
            undelta_varints(&bytes, ids.len() + 1).is_err(),
            "too few bytes"
        );
        assert!(
            undelta_varints(&bytes, ids.len() - 1).is_err(),
            "bytes left over"
        );
        assert!(undelta_varints(&[0xff; 11], 1).is_err(), "overlong varint");
        assert_eq!(delta_varints(&[100, 101, 102]).len(), 4);
    }
}
