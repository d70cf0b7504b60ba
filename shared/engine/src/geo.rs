//! Coordinates and spherical geometry.

use crate::{Error, Result};

/// Mean Earth radius in metres (the IUGG value OSRM also uses).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 position. Longitude first, as in GeoJSON and OSRM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coord {
    /// Longitude in degrees.
    pub lon: f64,
    /// Latitude in degrees.
    pub lat: f64,
}

impl Coord {
    /// Validates and builds a coordinate: both parts finite and within range.
    pub fn new(lon: f64, lat: f64) -> Result<Self> {
        if lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat)
        {
            Ok(Self { lon, lat })
        } else {
            Err(Error::InvalidCoordinate { lon, lat })
        }
    }
}

/// Great-circle distance in metres.
pub fn haversine_m(a: Coord, b: Coord) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// `[min_lon, min_lat, max_lon, max_lat]` over `coords`; infinite (min above max) when
/// there are none.
pub(crate) fn bounds<'a>(coords: impl IntoIterator<Item = &'a Coord>) -> [f64; 4] {
    coords.into_iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, c| {
            [
                b[0].min(c.lon),
                b[1].min(c.lat),
                b[2].max(c.lon),
                b[3].max(c.lat),
            ]
        },
    )
}

/// Initial bearing from `a` to `b` in degrees, clockwise from north, in `[0, 360)`.
pub fn bearing(a: Coord, b: Coord) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlon = (b.lon - a.lon).to_radians();
    let y = dlon.sin() * lat2.cos();
    let x = lat1.cos() * lat2.sin() - lat1.sin() * lat2.cos() * dlon.cos();
    let deg = y.atan2(x).to_degrees();
    (deg + 360.0) % 360.0
}

/// Linear interpolation between two coordinates; adequate for the metre-scale segments
/// of a road geometry.
pub fn lerp(a: Coord, b: Coord, t: f64) -> Coord {
    Coord {
        lon: a.lon + (b.lon - a.lon) * t,
        lat: a.lat + (b.lat - a.lat) * t,
    }
}

/// A local equirectangular projection to metres around a reference latitude. Good to well
/// under a metre across a city, which is what snapping needs; distances reported to users
/// are recomputed with [`haversine_m`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalProjection {
    cos_lat: f64,
}

impl LocalProjection {
    pub(crate) fn new(reference_lat: f64) -> Self {
        Self {
            cos_lat: reference_lat.to_radians().cos().max(1e-6),
        }
    }

    pub(crate) fn project(&self, c: Coord) -> [f64; 2] {
        let k = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        [c.lon * k * self.cos_lat, c.lat * k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_coordinates() {
        assert!(Coord::new(f64::NAN, 1.0).is_err());
        assert!(Coord::new(1.0, f64::INFINITY).is_err());
        assert!(Coord::new(181.0, 0.0).is_err());
        assert!(Coord::new(0.0, -90.5).is_err());
        assert!(Coord::new(7.42, 43.73).is_ok());
    }

    #[test]
    fn haversine_matches_arc_lengths() {
        // One degree along a meridian or the equator is R * pi / 180.
        let one_degree = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        let o = Coord { lon: 0.0, lat: 0.0 };
        assert!((haversine_m(o, Coord { lon: 0.0, lat: 1.0 }) - one_degree).abs() < 1e-6);
        assert!((haversine_m(o, Coord { lon: 1.0, lat: 0.0 }) - one_degree).abs() < 1e-6);
        // At 60 degrees north a degree of longitude is about half as long (great circle
        // slightly shorter than the parallel).
        let a = Coord {
            lon: 0.0,
            lat: 60.0,
        };
        let b = Coord {
            lon: 1.0,
            lat: 60.0,
        };
        let d = haversine_m(a, b);
        assert!(d < one_degree / 2.0 && d > one_degree / 2.0 - 5.0, "{d}");
        assert_eq!(haversine_m(a, a), 0.0);
    }

    #[test]
    fn bearing_cardinal_directions() {
        let o = Coord { lon: 0.0, lat: 0.0 };
        assert!((bearing(o, Coord { lon: 0.0, lat: 1.0 }) - 0.0).abs() < 1e-9);
        assert!((bearing(o, Coord { lon: 1.0, lat: 0.0 }) - 90.0).abs() < 1e-9);
        assert!(
            (bearing(
                o,
                Coord {
                    lon: 0.0,
                    lat: -1.0
                }
            ) - 180.0)
                .abs()
                < 1e-9
        );
        assert!(
            (bearing(
                o,
                Coord {
                    lon: -1.0,
                    lat: 0.0
                }
            ) - 270.0)
                .abs()
                < 1e-9
        );
    }
}
