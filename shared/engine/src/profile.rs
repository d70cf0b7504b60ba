//! The car profile: which OSM ways a car may use, in which direction, and how fast.
//!
//! | highway | default km/h |
//! |---|---:|
//! | motorway | 90 |
//! | trunk | 85 |
//! | primary | 65 |
//! | secondary | 55 |
//! | tertiary | 40 |
//! | `*_link` | 45 / 40 / 30 / 25 / 20 (motorway .. tertiary) |
//! | unclassified, residential, road | 25 |
//! | service | 15 |
//! | living_street | 10 |
//!
//! A parseable `maxspeed` (`50`, `50 km/h`, `30 mph`, `FR:urban`, ...) replaces the default,
//! scaled by [`CarProfile::maxspeed_factor`] because traffic rarely drives at the limit;
//! `maxspeed=none` uses the class default; anything unparseable is ignored.
//!
//! Direction: `oneway=yes|true|1` forward, `-1|reverse` backward, `no|false|0` both;
//! roundabouts (`junction=roundabout|circular`) and motorways (and their links) are
//! one-way unless tagged otherwise; `oneway=reversible|alternating` ways are left out because
//! their direction changes over time.
//!
//! Excluded: `area=yes`, `access`/`vehicle`/`motor_vehicle`/`motorcar` = `no` or `private`
//! (the most specific tag wins, so `access=no` + `motor_vehicle=yes` is allowed),
//! `highway=construction|proposed` and ways with any other highway class.

/// Which directions of a way a car may drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Along the node order of the way only.
    Forward,
    /// Against the node order only.
    Backward,
    /// Both ways.
    Both,
}

/// The decision the profile makes for one way.
#[derive(Debug, Clone, PartialEq)]
pub struct WayRule {
    /// Speed in km/h used for travel time.
    pub speed_kmh: f64,
    /// Allowed directions.
    pub direction: Direction,
}

/// The car profile. The defaults are documented at module level; fields are public so an
/// operator can tune them.
#[derive(Debug, Clone)]
pub struct CarProfile {
    /// Factor applied to a tagged `maxspeed` (average speed relative to the limit).
    pub maxspeed_factor: f64,
    /// Upper bound on any speed, km/h.
    pub max_speed_kmh: f64,
}

impl Default for CarProfile {
    fn default() -> Self {
        Self {
            maxspeed_factor: 0.8,
            max_speed_kmh: 130.0,
        }
    }
}

fn class_speed_kmh(highway: &str) -> Option<f64> {
    Some(match highway {
        "motorway" => 90.0,
        "motorway_link" => 45.0,
        "trunk" => 85.0,
        "trunk_link" => 40.0,
        "primary" => 65.0,
        "primary_link" => 30.0,
        "secondary" => 55.0,
        "secondary_link" => 25.0,
        "tertiary" => 40.0,
        "tertiary_link" => 20.0,
        "unclassified" | "residential" | "road" => 25.0,
        "service" => 15.0,
        "living_street" => 10.0,
        _ => return None,
    })
}

/// Parses an OSM `maxspeed` value into km/h. `Some(None)` means "no limit" (`none`);
/// `None` means the value could not be understood and must be ignored.
pub fn parse_maxspeed(value: &str) -> Option<Option<f64>> {
    let v = value.trim().to_ascii_lowercase();
    if v == "none" || v == "unlimited" {
        return Some(None);
    }
    // Country-implicit limits (the common ones in Europe; unknown countries fall back to
    // the zone type).
    if let Some((_, zone)) = v.split_once(':') {
        return match zone {
            "zone30" | "zone:30" => Some(Some(30.0)),
            "urban" => Some(Some(50.0)),
            "rural" => Some(Some(if v.starts_with("fr:") { 80.0 } else { 90.0 })),
            "motorway" => Some(Some(if v.starts_with("de:") { 130.0 } else { 120.0 })),
            "trunk" => Some(Some(110.0)),
            "living_street" | "walk" => Some(Some(10.0)),
            _ => None,
        };
    }
    // "50; 30" (conditional lists) - the first value is the general limit.
    let first = v.split([';', ',']).next()?.trim();
    let (number, factor) = if let Some(n) = first.strip_suffix("mph") {
        (n.trim(), 1.609_344)
    } else if let Some(n) = first.strip_suffix("km/h") {
        (n.trim(), 1.0)
    } else if let Some(n) = first.strip_suffix("kmh") {
        (n.trim(), 1.0)
    } else if let Some(n) = first.strip_suffix("knots") {
        (n.trim(), 1.852)
    } else {
        (first, 1.0)
    };
    let kmh = number.parse::<f64>().ok()? * factor;
    (kmh.is_finite() && kmh > 0.0 && kmh <= 300.0).then_some(Some(kmh))
}

fn is_denied(value: Option<&str>) -> Option<bool> {
    match value? {
        "no" | "private" | "agricultural" | "forestry" | "delivery" => Some(true),
        "yes" | "permissive" | "destination" | "designated" | "customers" => Some(false),
        _ => None,
    }
}

impl CarProfile {
    /// The vehicle classes whose turn restrictions apply (`restriction:<class>=*`, and
    /// `except=<class>` exempts), most specific first.
    pub fn restriction_vehicles(&self) -> &'static [&'static str] {
        &["motorcar", "motor_vehicle", "vehicle"]
    }

    /// Decides whether a way is a car road and how it is driven. `tag` looks a tag up on the
    /// way. Returns `None` for ways a car cannot use.
    pub fn way_rule<'a>(&self, tag: impl Fn(&str) -> Option<&'a str>) -> Option<WayRule> {
        let highway = tag("highway")?;
        let default_speed = class_speed_kmh(highway)?;
        if tag("area") == Some("yes") {
            return None;
        }
        // The most specific access tag that says anything decides.
        let denied = ["motorcar", "motor_vehicle", "vehicle", "access"]
            .iter()
            .find_map(|key| is_denied(tag(key)))
            .unwrap_or(false);
        if denied {
            return None;
        }
        let roundabout = matches!(tag("junction"), Some("roundabout" | "circular"));
        let implied_oneway = roundabout || matches!(highway, "motorway" | "motorway_link");
        let direction = match tag("oneway") {
            Some("yes" | "true" | "1") => Direction::Forward,
            Some("-1" | "reverse") => Direction::Backward,
            Some("no" | "false" | "0") => Direction::Both,
            Some("reversible" | "alternating") => return None,
            _ if implied_oneway => Direction::Forward,
            _ => Direction::Both,
        };
        let speed = match tag("maxspeed").and_then(parse_maxspeed) {
            Some(Some(limit)) => limit * self.maxspeed_factor,
            Some(None) | None => default_speed,
        };
        Some(WayRule {
            speed_kmh: speed.clamp(1.0, self.max_speed_kmh),
            direction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tags: &[(&'static str, &'static str)]) -> Option<WayRule> {
        CarProfile::default().way_rule(|k| tags.iter().find(|(key, _)| *key == k).map(|(_, v)| *v))
    }

    #[test]
    fn maxspeed_parsing() {
        assert_eq!(parse_maxspeed("50"), Some(Some(50.0)));
        assert_eq!(parse_maxspeed(" 50 km/h"), Some(Some(50.0)));
        assert_eq!(parse_maxspeed("30 mph"), Some(Some(30.0 * 1.609_344)));
        assert_eq!(parse_maxspeed("none"), Some(None));
        assert_eq!(parse_maxspeed("FR:urban"), Some(Some(50.0)));
        assert_eq!(parse_maxspeed("FR:rural"), Some(Some(80.0)));
        assert_eq!(parse_maxspeed("50;30"), Some(Some(50.0)));
        assert_eq!(parse_maxspeed("signals"), None);
        assert_eq!(parse_maxspeed("fast"), None);
        assert_eq!(parse_maxspeed("-5"), None);
        assert_eq!(parse_maxspeed("NaN"), None);
        assert_eq!(parse_maxspeed(""), None);
    }

    #[test]
    fn classes_and_access() {
        assert_eq!(
            rule(&[("highway", "residential")]).map(|r| r.speed_kmh),
            Some(25.0)
        );
        assert!(rule(&[("highway", "footway")]).is_none());
        assert!(rule(&[("highway", "construction")]).is_none());
        assert!(rule(&[("highway", "service"), ("access", "private")]).is_none());
        assert!(rule(&[("highway", "primary"), ("motor_vehicle", "no")]).is_none());
        assert!(
            rule(&[
                ("highway", "primary"),
                ("access", "no"),
                ("motor_vehicle", "yes")
            ])
            .is_some()
        );
        assert!(rule(&[("highway", "pedestrian"), ("area", "yes")]).is_none());
        assert!(rule(&[("highway", "residential"), ("area", "yes")]).is_none());
    }

    #[test]
    fn oneway_rules() {
        let dir = |tags: &[(&'static str, &'static str)]| rule(tags).map(|r| r.direction);
        assert_eq!(dir(&[("highway", "primary")]), Some(Direction::Both));
        assert_eq!(
            dir(&[("highway", "primary"), ("oneway", "yes")]),
            Some(Direction::Forward)
        );
        assert_eq!(
            dir(&[("highway", "primary"), ("oneway", "-1")]),
            Some(Direction::Backward)
        );
        assert_eq!(dir(&[("highway", "motorway")]), Some(Direction::Forward));
        assert_eq!(
            dir(&[("highway", "motorway"), ("oneway", "no")]),
            Some(Direction::Both)
        );
        assert_eq!(
            dir(&[("highway", "tertiary"), ("junction", "roundabout")]),
            Some(Direction::Forward)
        );
        assert_eq!(
            dir(&[("highway", "tertiary"), ("oneway", "reversible")]),
            None
        );
    }

    #[test]
    fn maxspeed_applies_factor_and_cap() {
        let r = rule(&[("highway", "primary"), ("maxspeed", "100")]).map(|r| r.speed_kmh);
        assert_eq!(r, Some(80.0));
        let r = rule(&[("highway", "motorway"), ("maxspeed", "none")]).map(|r| r.speed_kmh);
        assert_eq!(r, Some(90.0));
        let r = rule(&[("highway", "primary"), ("maxspeed", "garbage")]).map(|r| r.speed_kmh);
        assert_eq!(r, Some(65.0));
    }
}
