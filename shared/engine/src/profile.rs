//! Road profiles: which OSM ways a vehicle may use, in which direction, and how fast. Two
//! vehicles: the car ([`Profile::car`], the default) and the truck ([`Profile::truck`]).
//!
//! # Car
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
//!
//! # Truck
//!
//! Everything as for the car, except:
//! - access: `hgv` is the most specific tag (`hgv=no` excludes, `destination`, `designated`,
//!   `delivery`, `yes` allow), then `motor_vehicle`, `vehicle`, `access`; `goods` applies
//!   only to a vehicle of at most 3.5 t; `delivery` in any access tag allows a truck;
//! - dimensions: a way whose `maxheight` (or `maxheight:physical`), `maxwidth`, `maxlength`,
//!   `maxweight` or `maxaxleload` is below the truck's ([`TruckDimensions`]) is left out.
//!   Units: metres by default, `m`, `cm`, `ft`, `in`, feet and inches as `3'6"`; tonnes by
//!   default, `t`, `kg`, `lbs`, `st` (short tons). `none`, `default` and unparseable values
//!   set no limit;
//! - speeds: [`Profile::truck`]'s class speeds are lower (motorway 80, trunk 70, primary 55,
//!   secondary 45, tertiary 35, links 40 / 35 / 25 / 20 / 15, unclassified, residential and
//!   road 20, service 10, living_street 5 km/h), `maxspeed:hgv` wins over `maxspeed`, and no
//!   speed exceeds 90 km/h;
//! - turn restrictions tagged `restriction:hgv` apply (and `except=hgv` exempts).
//!
//! The defaults describe a 7.5 t delivery truck: 3.5 m high, 2.55 m wide, 8 m long, 7.5 t,
//! 5 t per axle.

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

/// A road profile. The defaults are documented at module level; fields are public so an
/// operator can tune them. `Profile::default()` is the car.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Factor applied to a tagged `maxspeed` (average speed relative to the limit).
    pub maxspeed_factor: f64,
    /// Upper bound on any speed, km/h.
    pub max_speed_kmh: f64,
    /// The vehicle routed.
    pub vehicle: Vehicle,
}

/// The profile's former name, from when the car was the only vehicle.
pub type CarProfile = Profile;

/// The vehicle a profile routes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vehicle {
    /// A car.
    Car,
    /// A truck of the given dimensions.
    Truck(TruckDimensions),
}

/// A truck's size and weight, compared with OSM's `max*` limits at build time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruckDimensions {
    /// Height, metres.
    pub height_m: f64,
    /// Width, metres.
    pub width_m: f64,
    /// Length, metres.
    pub length_m: f64,
    /// Actual weight, tonnes.
    pub weight_t: f64,
    /// Heaviest axle load, tonnes.
    pub axle_load_t: f64,
}

impl Default for TruckDimensions {
    /// A 7.5 t delivery truck.
    fn default() -> Self {
        Self {
            height_m: 3.5,
            width_m: 2.55,
            length_m: 8.0,
            weight_t: 7.5,
            axle_load_t: 5.0,
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::car()
    }
}

impl Profile {
    /// The car profile.
    pub fn car() -> Self {
        Self {
            maxspeed_factor: 0.8,
            max_speed_kmh: 130.0,
            vehicle: Vehicle::Car,
        }
    }

    /// The truck profile for a truck of `dimensions`.
    pub fn truck(dimensions: TruckDimensions) -> Self {
        Self {
            maxspeed_factor: 0.8,
            max_speed_kmh: 90.0,
            vehicle: Vehicle::Truck(dimensions),
        }
    }
}

fn truck_class_speed_kmh(highway: &str) -> Option<f64> {
    Some(match highway {
        "motorway" => 80.0,
        "motorway_link" => 40.0,
        "trunk" => 70.0,
        "trunk_link" => 35.0,
        "primary" => 55.0,
        "primary_link" => 25.0,
        "secondary" => 45.0,
        "secondary_link" => 20.0,
        "tertiary" => 35.0,
        "tertiary_link" => 15.0,
        "unclassified" | "residential" | "road" => 20.0,
        "service" => 10.0,
        "living_street" => 5.0,
        _ => return None,
    })
}

/// Splits `value` into a number (decimal comma allowed) and a lower-case unit suffix.
fn number_and_unit(value: &str) -> Option<(f64, String)> {
    let v = value.trim().to_ascii_lowercase().replace(',', ".");
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let number: f64 = v[..split].parse().ok()?;
    (number.is_finite() && number > 0.0).then(|| (number, v[split..].trim().to_owned()))
}

/// Parses an OSM length (`maxheight`, `maxwidth`, `maxlength`) into metres: `3.5`, `3.5 m`,
/// `350 cm`, `12 ft`, `3'6"`, `12'`. `None` for no limit (`none`, `default`, ...) and for
/// anything unparseable.
pub fn parse_length_m(value: &str) -> Option<f64> {
    let v = value.trim();
    if let Some((feet, rest)) = v.split_once('\'') {
        let feet: f64 = feet.trim().parse().ok()?;
        let inches = rest.trim().trim_end_matches('"').trim();
        let inches: f64 = if inches.is_empty() {
            0.0
        } else {
            inches.parse().ok()?
        };
        let m = feet * 0.3048 + inches * 0.0254;
        return (m.is_finite() && m > 0.0).then_some(m);
    }
    let (n, unit) = number_and_unit(v)?;
    let factor = match unit.as_str() {
        "" | "m" => 1.0,
        "cm" => 0.01,
        "ft" | "feet" => 0.3048,
        "in" | "\"" => 0.0254,
        _ => return None,
    };
    Some(n * factor)
}

/// Parses an OSM weight (`maxweight`, `maxaxleload`) into tonnes: `7.5`, `7.5 t`,
/// `7500 kg`, `10000 lbs`, `5 st` (short tons). `None` for no limit or unparseable.
pub fn parse_weight_t(value: &str) -> Option<f64> {
    let (n, unit) = number_and_unit(value)?;
    let factor = match unit.as_str() {
        "" | "t" => 1.0,
        "kg" => 0.001,
        "lb" | "lbs" => 0.000_453_592_37,
        "st" => 0.907_184_74,
        _ => return None,
    };
    Some(n * factor)
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

impl Profile {
    /// The profile's name as OSRM URLs spell it (`/route/v1/{name}/...`): `car` or `truck`.
    pub fn name(&self) -> &'static str {
        match self.vehicle {
            Vehicle::Car => "car",
            Vehicle::Truck(_) => "truck",
        }
    }

    /// The vehicle classes whose turn restrictions apply (`restriction:<class>=*`, and
    /// `except=<class>` exempts), most specific first.
    pub fn restriction_vehicles(&self) -> &'static [&'static str] {
        match self.vehicle {
            Vehicle::Car => &["motorcar", "motor_vehicle", "vehicle"],
            Vehicle::Truck(_) => &["hgv", "motor_vehicle", "vehicle"],
        }
    }

    /// Whether a truck's dimensions exceed a limit tagged on the way.
    fn too_big<'a>(truck: &TruckDimensions, tag: &impl Fn(&str) -> Option<&'a str>) -> bool {
        let over = |keys: &[&str], size: f64, parse: fn(&str) -> Option<f64>| {
            keys.iter()
                .filter_map(|k| tag(k).and_then(parse))
                .any(|limit| size > limit)
        };
        over(
            &["maxheight", "maxheight:physical"],
            truck.height_m,
            parse_length_m,
        ) || over(
            &["maxwidth", "maxwidth:physical"],
            truck.width_m,
            parse_length_m,
        ) || over(&["maxlength"], truck.length_m, parse_length_m)
            || over(&["maxweight"], truck.weight_t, parse_weight_t)
            || over(&["maxaxleload"], truck.axle_load_t, parse_weight_t)
    }

    /// Decides whether a way is a car road and how it is driven. `tag` looks a tag up on the
    /// way. Returns `None` for ways a car cannot use.
    pub fn way_rule<'a>(&self, tag: impl Fn(&str) -> Option<&'a str>) -> Option<WayRule> {
        let highway = tag("highway")?;
        let default_speed = match self.vehicle {
            Vehicle::Car => class_speed_kmh(highway)?,
            Vehicle::Truck(_) => truck_class_speed_kmh(highway)?,
        };
        if tag("area") == Some("yes") {
            return None;
        }
        // The most specific access tag that says anything decides.
        let denied = match &self.vehicle {
            Vehicle::Car => ["motorcar", "motor_vehicle", "vehicle", "access"]
                .iter()
                .find_map(|key| is_denied(tag(key)))
                .unwrap_or(false),
            Vehicle::Truck(truck) => {
                // `goods` is the light goods vehicle (up to 3.5 t); `hgv` is everything
                // heavier.
                let keys: &[&str] = if truck.weight_t <= 3.5 {
                    &["goods", "motor_vehicle", "vehicle", "access"]
                } else {
                    &["hgv", "motor_vehicle", "vehicle", "access"]
                };
                let access = keys
                    .iter()
                    .find_map(|key| match tag(key) {
                        // A delivery truck is what `delivery` lets in.
                        Some("delivery") => Some(false),
                        other => is_denied(other),
                    })
                    .unwrap_or(false);
                access || Self::too_big(truck, &tag)
            }
        };
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
        let maxspeed = match self.vehicle {
            Vehicle::Truck(_) => tag("maxspeed:hgv").or_else(|| tag("maxspeed")),
            Vehicle::Car => tag("maxspeed"),
        };
        let speed = match maxspeed.and_then(parse_maxspeed) {
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

    fn truck(tags: &[(&'static str, &'static str)]) -> Option<WayRule> {
        Profile::truck(TruckDimensions::default())
            .way_rule(|k| tags.iter().find(|(key, _)| *key == k).map(|(_, v)| *v))
    }

    #[test]
    fn lengths_and_weights_parse_with_units() {
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(close(parse_length_m("3.5"), 3.5));
        assert!(close(parse_length_m("3,5 m"), 3.5));
        assert!(close(parse_length_m("350 cm"), 3.5));
        assert!(close(parse_length_m("12 ft"), 12.0 * 0.3048));
        assert!(close(parse_length_m("3'6\""), 3.0 * 0.3048 + 6.0 * 0.0254));
        assert!(close(parse_length_m("12'"), 12.0 * 0.3048));
        assert!(close(
            parse_length_m("12' 6\""),
            12.0 * 0.3048 + 6.0 * 0.0254
        ));
        for none in [
            "none",
            "default",
            "below_default",
            "",
            "-3",
            "3 parsecs",
            "'",
        ] {
            assert_eq!(parse_length_m(none), None, "{none}");
        }
        assert!(close(parse_weight_t("3.5 t"), 3.5));
        assert!(close(parse_weight_t("7500 kg"), 7.5));
        assert!(close(parse_weight_t("7.5"), 7.5));
        assert!(close(parse_weight_t("10000 lbs"), 4.535_923_7));
        assert!(close(parse_weight_t("5 st"), 4.535_923_7));
        assert_eq!(parse_weight_t("none"), None);
        assert_eq!(parse_weight_t("heavy"), None);
    }

    #[test]
    fn trucks_respect_hgv_access_and_dimensions() {
        let road = ("highway", "residential");
        assert!(truck(&[road]).is_some());
        assert!(truck(&[road, ("hgv", "no")]).is_none());
        assert!(truck(&[road, ("hgv", "destination")]).is_some());
        assert!(truck(&[road, ("access", "no"), ("hgv", "designated")]).is_some());
        assert!(truck(&[road, ("access", "delivery")]).is_some());
        assert!(
            truck(&[road, ("goods", "no")]).is_some(),
            "goods is up to 3.5 t"
        );
        assert!(truck(&[road, ("maxheight", "3.2")]).is_none());
        assert!(truck(&[road, ("maxheight", "11'")]).is_none());
        assert!(truck(&[road, ("maxheight", "4 m")]).is_some());
        assert!(truck(&[road, ("maxheight", "default")]).is_some());
        assert!(truck(&[road, ("maxweight", "3.5 t")]).is_none());
        assert!(truck(&[road, ("maxweight", "12")]).is_some());
        assert!(truck(&[road, ("maxwidth", "2.2")]).is_none());
        assert!(truck(&[road, ("maxlength", "6")]).is_none());
        assert!(truck(&[road, ("maxaxleload", "4 t")]).is_none());
        // The car ignores all of it.
        assert!(rule(&[road, ("hgv", "no"), ("maxheight", "2.0")]).is_some());
        // Slower than the car, and `maxspeed:hgv` first.
        let speed = |tags: &[(&'static str, &'static str)]| truck(tags).map(|r| r.speed_kmh);
        assert_eq!(speed(&[road]), Some(20.0));
        assert_eq!(
            speed(&[("highway", "motorway"), ("maxspeed", "120")]),
            Some(90.0)
        );
        assert_eq!(
            speed(&[
                ("highway", "primary"),
                ("maxspeed", "90"),
                ("maxspeed:hgv", "50")
            ]),
            Some(40.0)
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
