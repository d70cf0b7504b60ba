//! `edgeroute-control-plane graph ...`: build graph artifacts from OSM and query them.
//!
//! The control plane owns graph building because it is what distributes artifacts to
//! agents; these subcommands are also the quickest way to try the engine by hand.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use edgeroute_engine::{
    BuildOptions, BuildProgress, Coord, Graph, Profile, ProgressFn, TruckDimensions, polyline,
};
use edgeroute_protocol::osrm::LineString;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Graph subcommands.
#[derive(Subcommand, Debug)]
pub enum GraphCommand {
    /// Import an OSM PBF extract, preprocess it and write a graph artifact.
    Build {
        /// The OSM PBF file to import.
        #[arg(long)]
        osm: PathBuf,
        /// Where to write the artifact.
        #[arg(long)]
        out: PathBuf,
        /// Version label stored in the artifact (defaults to the file stem).
        #[arg(long)]
        version: Option<String>,
        /// The vehicle the graph is for.
        #[arg(long, value_enum, default_value_t = ProfileArg::Car)]
        profile: ProfileArg,
        /// Truck dimensions (with `--profile truck`); defaults: a 7.5 t delivery truck.
        #[command(flatten)]
        truck: TruckArgs,
    },
    /// Print the identity and size of an artifact.
    Info {
        /// The artifact file.
        #[arg(long)]
        graph: PathBuf,
    },
    /// Upload an artifact to a running center's registry (and optionally make it a
    /// region's graph).
    Push(super::push::PushArgs),
    /// Compute the fastest route between two points.
    Route {
        /// The artifact file.
        #[arg(long)]
        graph: PathBuf,
        /// Start, as `lon,lat`.
        from: String,
        /// Destination, as `lon,lat`.
        to: String,
        /// How to print the geometry.
        #[arg(long, value_enum, default_value_t = GeometryFormat::Polyline)]
        geometry: GeometryFormat,
        /// Maximum distance from a point to the road it snaps to, metres.
        #[arg(long, default_value_t = 1000.0)]
        radius: f64,
    },
}

/// Road profiles a graph can be built for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileArg {
    /// Cars.
    Car,
    /// Trucks of the `--truck-*` dimensions.
    Truck,
}

/// A truck's dimensions, compared with OSM's `max*` limits when the graph is built.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct TruckArgs {
    /// Height, metres.
    #[arg(long, default_value_t = TruckDimensions::default().height_m)]
    pub truck_height_m: f64,
    /// Width, metres.
    #[arg(long, default_value_t = TruckDimensions::default().width_m)]
    pub truck_width_m: f64,
    /// Length, metres.
    #[arg(long, default_value_t = TruckDimensions::default().length_m)]
    pub truck_length_m: f64,
    /// Weight, tonnes.
    #[arg(long, default_value_t = TruckDimensions::default().weight_t)]
    pub truck_weight_t: f64,
    /// Heaviest axle load, tonnes.
    #[arg(long, default_value_t = TruckDimensions::default().axle_load_t)]
    pub truck_axle_load_t: f64,
}

impl TruckArgs {
    fn dimensions(&self) -> anyhow::Result<TruckDimensions> {
        let d = TruckDimensions {
            height_m: self.truck_height_m,
            width_m: self.truck_width_m,
            length_m: self.truck_length_m,
            weight_t: self.truck_weight_t,
            axle_load_t: self.truck_axle_load_t,
        };
        let all = [d.height_m, d.width_m, d.length_m, d.weight_t, d.axle_load_t];
        if all.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            bail!("truck dimensions must be positive numbers: {d:?}");
        }
        Ok(d)
    }
}

/// Geometry output formats (as OSRM names them).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum GeometryFormat {
    /// Google polyline, precision 5.
    Polyline,
    /// Google polyline, precision 6.
    Polyline6,
    /// A GeoJSON LineString.
    Geojson,
}

/// Parses `lon,lat`.
pub fn parse_lon_lat(s: &str) -> anyhow::Result<Coord> {
    let (lon, lat) = s
        .split_once(',')
        .with_context(|| format!("`{s}` is not a `lon,lat` pair"))?;
    let lon: f64 = lon
        .trim()
        .parse()
        .with_context(|| format!("bad longitude in `{s}`"))?;
    let lat: f64 = lat
        .trim()
        .parse()
        .with_context(|| format!("bad latitude in `{s}`"))?;
    Ok(Coord::new(lon, lat)?)
}

/// Runs a graph subcommand.
pub fn run(command: GraphCommand) -> anyhow::Result<()> {
    match command {
        GraphCommand::Build {
            osm,
            out,
            version,
            profile,
            truck,
        } => {
            let profile = match profile {
                ProfileArg::Car => Profile::car(),
                ProfileArg::Truck => Profile::truck(truck.dimensions()?),
            };
            build(osm, out, version, &profile)
        }
        GraphCommand::Push(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(super::push::run(args)),
        GraphCommand::Info { graph } => {
            let g = Graph::read_artifact(&graph)
                .with_context(|| format!("loading {}", graph.display()))?;
            println!("{}", serde_json::to_string_pretty(&info_json(&g))?);
            Ok(())
        }
        GraphCommand::Route {
            graph,
            from,
            to,
            geometry,
            radius,
        } => {
            let (from, to) = (parse_lon_lat(&from)?, parse_lon_lat(&to)?);
            let g = Graph::read_artifact(&graph)
                .with_context(|| format!("loading {}", graph.display()))?;
            let a = g.snap(from, radius).context("snapping the start")?;
            let b = g.snap(to, radius).context("snapping the destination")?;
            let route = g.route(&a, &b)?;
            let geometry = match geometry {
                GeometryFormat::Polyline => {
                    serde_json::Value::String(polyline::encode(&route.geometry, 5))
                }
                GeometryFormat::Polyline6 => {
                    serde_json::Value::String(polyline::encode(&route.geometry, 6))
                }
                GeometryFormat::Geojson => serde_json::to_value(LineString::new(
                    route.geometry.iter().map(|c| [c.lon, c.lat]).collect(),
                ))?,
            };
            let out = serde_json::json!({
                "duration_s": route.duration_s,
                "distance_m": route.distance_m,
                "from": { "snapped": [a.location.lon, a.location.lat], "snap_distance_m": a.distance_m, "name": a.name },
                "to": { "snapped": [b.location.lon, b.location.lat], "snap_distance_m": b.distance_m, "name": b.name },
                "geometry": geometry,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

fn info_json(g: &Graph) -> serde_json::Value {
    let i = g.info();
    serde_json::json!({
        "version": i.version,
        "profile": i.profile,
        "sha256": g.sha256(),
        "nodes": i.node_count,
        "edges": i.edge_count,
        "roads": i.road_count,
        "hierarchy_arcs": i.arc_count,
        "turn_restrictions": i.restrictions.applied,
        "split_nodes": i.split_nodes,
        "bbox": i.bbox,
    })
}

fn build(
    osm: PathBuf,
    out: PathBuf,
    version: Option<String>,
    profile: &Profile,
) -> anyhow::Result<()> {
    if !osm.is_file() {
        bail!("{} does not exist or is not a file", osm.display());
    }
    let version = version.unwrap_or_else(|| {
        osm.file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n).to_owned())
            .unwrap_or_else(|| "graph".to_owned())
    });
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg} {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let progress_bar = bar.clone();
    let progress: ProgressFn = Arc::new(move |p| match p {
        BuildProgress::Importing => progress_bar.set_message("importing OSM"),
        BuildProgress::Contracting { done, total } => {
            progress_bar.set_message("contracting");
            progress_bar.set_length(total as u64);
            progress_bar.set_position(done as u64);
        }
        BuildProgress::Indexing => progress_bar.set_message("indexing and checksumming"),
    });
    let started = Instant::now();
    let graph = Graph::from_osm_file(
        &osm,
        profile,
        &BuildOptions {
            version,
            progress: Some(progress),
        },
    )
    .with_context(|| format!("building a graph from {}", osm.display()))?;
    let built = started.elapsed();
    graph
        .write_artifact(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    bar.finish_and_clear();
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let i = graph.info();
    println!(
        "built {} ({} profile) in {:.2}s: {} nodes, {} directed edges, {} roads, {} hierarchy arcs\nwrote {} ({:.1} MiB), sha256 {}",
        i.version,
        i.profile,
        built.as_secs_f64(),
        i.node_count,
        i.edge_count,
        i.road_count,
        i.arc_count,
        out.display(),
        size as f64 / (1024.0 * 1024.0),
        graph.sha256()
    );
    let r = i.restrictions;
    println!(
        "turn restrictions: {} applied ({} extra nodes); skipped: {} with members missing from \
         the extract, {} malformed, {} not for this vehicle, {} outside the routable network",
        r.applied, i.split_nodes, r.missing_member, r.invalid, r.exempt, r.outside_network
    );
    Ok(())
}
