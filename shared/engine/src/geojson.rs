//! GeoJSON geometry (RFC 7946), the third geometry format OSRM offers.

use crate::geo::Coord;
use serde::Serialize;

/// A GeoJSON `LineString`: `{"type": "LineString", "coordinates": [[lon, lat], ...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineString {
    /// Always `"LineString"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Positions, longitude first.
    pub coordinates: Vec<[f64; 2]>,
}

impl LineString {
    /// The line through `coords`, in order.
    pub fn new(coords: &[Coord]) -> Self {
        Self {
            kind: "LineString",
            coordinates: coords.iter().map(|c| [c.lon, c.lat]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_rfc7946_linestring() {
        let line = LineString::new(&[
            Coord {
                lon: 7.1,
                lat: 43.2,
            },
            Coord {
                lon: 7.3,
                lat: 43.4,
            },
        ]);
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(
            json,
            r#"{"type":"LineString","coordinates":[[7.1,43.2],[7.3,43.4]]}"#
        );
    }
}
