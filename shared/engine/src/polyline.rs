//! Google's encoded polyline format, at precision 5 (`polyline`) or 6 (`polyline6`), with
//! latitude first as the format prescribes.

use crate::geo::Coord;
use crate::{Error, Result};

fn push_value(out: &mut String, value: i64) {
    let mut v = if value < 0 { !(value << 1) } else { value << 1 };
    while v >= 0x20 {
        out.push(char::from((((v & 0x1f) | 0x20) + 63) as u8));
        v >>= 5;
    }
    out.push(char::from((v + 63) as u8));
}

/// Encodes coordinates; `precision` is the number of decimal digits kept (5 or 6).
pub fn encode(coords: &[Coord], precision: u32) -> String {
    let factor = 10f64.powi(precision as i32);
    let mut out = String::with_capacity(coords.len() * 8);
    let (mut prev_lat, mut prev_lon) = (0i64, 0i64);
    for c in coords {
        let lat = (c.lat * factor).round() as i64;
        let lon = (c.lon * factor).round() as i64;
        push_value(&mut out, lat - prev_lat);
        push_value(&mut out, lon - prev_lon);
        prev_lat = lat;
        prev_lon = lon;
    }
    out
}

/// Why a polyline could not be decoded.
fn invalid(reason: &str) -> Error {
    Error::InvalidPolyline(reason.to_owned())
}

/// Decodes a polyline; every coordinate is validated.
pub fn decode(encoded: &str, precision: u32) -> Result<Vec<Coord>> {
    let factor = 10f64.powi(precision as i32);
    let bytes = encoded.as_bytes();
    let mut at = 0;
    let mut next = || -> Result<Option<i64>> {
        if at == bytes.len() {
            return Ok(None);
        }
        let mut result: i64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = bytes.get(at) else {
                return Err(invalid("ends in the middle of a value"));
            };
            at += 1;
            if !(63..=126).contains(&b) {
                return Err(invalid(
                    "contains a character outside the polyline alphabet",
                ));
            }
            let chunk = i64::from(b - 63);
            if shift > 55 {
                return Err(invalid("value too long"));
            }
            result |= (chunk & 0x1f) << shift;
            shift += 5;
            if chunk < 0x20 {
                break;
            }
        }
        Ok(Some(if result & 1 == 1 {
            !(result >> 1)
        } else {
            result >> 1
        }))
    };
    let mut coords = Vec::new();
    let (mut lat, mut lon) = (0i64, 0i64);
    while let Some(dlat) = next()? {
        let dlon = next()?.ok_or_else(|| invalid("has an odd number of values"))?;
        lat = lat
            .checked_add(dlat)
            .ok_or_else(|| invalid("value overflows"))?;
        lon = lon
            .checked_add(dlon)
            .ok_or_else(|| invalid("value overflows"))?;
        coords.push(Coord::new(lon as f64 / factor, lat as f64 / factor)?);
    }
    Ok(coords)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_reference_example() {
        // The example from Google's format documentation.
        let pts = [
            Coord {
                lon: -120.2,
                lat: 38.5,
            },
            Coord {
                lon: -120.95,
                lat: 40.7,
            },
            Coord {
                lon: -126.453,
                lat: 43.252,
            },
        ];
        assert_eq!(encode(&pts, 5), "_p~iF~ps|U_ulLnnqC_mqNvxq`@");
        let back = decode("_p~iF~ps|U_ulLnnqC_mqNvxq`@", 5).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in back.iter().zip(&pts) {
            assert!((a.lon - b.lon).abs() < 1e-9 && (a.lat - b.lat).abs() < 1e-9);
        }
    }

    #[test]
    fn precision_six_round_trip() {
        let pts = [
            Coord {
                lon: 7.419_123,
                lat: 43.731_456,
            },
            Coord {
                lon: 7.420_001,
                lat: 43.732,
            },
        ];
        let back = decode(&encode(&pts, 6), 6).unwrap();
        for (a, b) in back.iter().zip(&pts) {
            assert!((a.lon - b.lon).abs() < 1e-7 && (a.lat - b.lat).abs() < 1e-7);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("_p~iF", 5).is_err(), "odd number of values");
        assert!(decode("_p~i", 5).is_err(), "truncated value");
        assert!(
            decode("abc def", 5).is_err(),
            "space is outside the alphabet"
        );
        assert!(decode("\u{e9}", 5).is_err());
        assert!(decode("~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~", 5).is_err());
        // Valid encoding but latitude 900 degrees.
        let huge = encode(
            &[Coord {
                lon: 0.0,
                lat: 89.0,
            }],
            5,
        ) + &encode(
            &[Coord {
                lon: 0.0,
                lat: 89.0,
            }],
            5,
        );
        assert!(decode(&huge, 5).is_err());
        assert_eq!(decode("", 5).unwrap(), vec![]);
    }
}
