//! Quality benchmark of the VRP solver on the instances in `shared/data/vrp/`: per instance
//! and on average, vehicles used, distance, best-known solution and gap.
//!
//! ```text
//! cargo run --release -p edgeroute-tests --bin vrp-bench -- --family solomon --budget-ms 1000
//! ```
//!
//! Solomon is compared with `solomon_bks_distance_objective.csv` (the solver minimises
//! distance, not vehicles first); Homberger and X with `bks.csv`. Every solution goes
//! through the independent feasibility checker; an infeasible one fails the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use edgeroute_engine::vrp::{Problem, Solution, SolveOptions, check_feasibility, solve};
use edgeroute_tests::vrp_instances::{BenchInstance, Family, load, load_bks};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FamilyArg {
    Solomon,
    Homberger,
    X,
}

/// Runs the VRP solver on benchmark instances and reports the gap to the best known.
#[derive(Debug, Parser)]
struct Args {
    /// Instance family.
    #[arg(long, value_enum, default_value = "solomon")]
    family: FamilyArg,
    /// Time budget per instance, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    budget_ms: u64,
    /// Only instances whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Skip instances with more customers than this.
    #[arg(long)]
    max_customers: Option<usize>,
    /// The `shared/data` directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"))]
    data_dir: PathBuf,
    /// Parallel searches per instance.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the solver.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The one call that solves an instance; swap it for an HTTP `/optimize` client to
/// benchmark the agent end to end.
fn solve_instance(problem: &Problem, budget: Duration, args: &Args) -> Result<Solution> {
    let options = SolveOptions {
        time_limit: budget,
        seed: args.seed,
        threads: args.threads,
        max_iterations: None,
    };
    Ok(solve(problem, &options)?)
}

struct Row {
    vehicles: usize,
    distance: f64,
    gap: f64,
    bks_vehicles: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let vrp = args.data_dir.join("vrp");
    let (family, dir, ext, bks_file) = match args.family {
        FamilyArg::Solomon => (
            Family::Solomon,
            vrp.join("solomon"),
            "txt",
            "solomon_bks_distance_objective.csv",
        ),
        FamilyArg::Homberger => (Family::Homberger, vrp.join("homberger"), "txt", "bks.csv"),
        FamilyArg::X => (Family::X, vrp.join("cvrp_x"), "vrp", "bks.csv"),
    };
    let bks = load_bks(&vrp.join(bks_file))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .filter(|p| {
            name(p).is_some_and(|n| args.filter.as_ref().is_none_or(|f| n.contains(f.as_str())))
        })
        .collect();
    files.sort_by_key(|p| sort_key(p));
    let budget = Duration::from_millis(args.budget_ms);
    println!(
        "{:<16} {:>5} {:>4} {:>11} {:>4} {:>11} {:>7} {:>8}",
        "instance", "cust", "veh", "distance", "bks", "bks dist", "gap %", "time ms"
    );
    let mut rows = Vec::new();
    for path in &files {
        let inst: BenchInstance = load(path, family)?;
        if args.max_customers.is_some_and(|m| inst.customers() > m) {
            continue;
        }
        let best = bks
            .get(&inst.name)
            .with_context(|| format!("{} has no BKS row", inst.name))?;
        let started = Instant::now();
        let solution = solve_instance(&inst.problem, budget, &args)?;
        let elapsed = started.elapsed();
        let stats = check_feasibility(&inst.problem, &solution)
            .with_context(|| format!("{}: infeasible solution", inst.name))?;
        if stats.unassigned > 0 {
            bail!(
                "{}: {} customers left unassigned",
                inst.name,
                stats.unassigned
            );
        }
        let distance = inst.distance(&solution);
        let row = Row {
            vehicles: BenchInstance::vehicles_used(&solution),
            distance,
            gap: 100.0 * (distance / best.distance - 1.0),
            bks_vehicles: best.vehicles,
        };
        println!(
            "{:<16} {:>5} {:>4} {:>11.2} {:>4} {:>11.2} {:>7.2} {:>8}",
            inst.name,
            inst.customers(),
            row.vehicles,
            row.distance,
            best.vehicles,
            best.distance,
            row.gap,
            elapsed.as_millis()
        );
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("no instance matched in {}", dir.display());
    }
    let n = rows.len() as f64;
    let mean = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n;
    println!(
        "mean over {} instances: vehicles {:.2} (bks {:.2}), gap {:.2}%, worst gap {:.2}%, all feasible",
        rows.len(),
        mean(&|r| r.vehicles as f64),
        mean(&|r| f64::from(r.bks_vehicles)),
        mean(&|r| r.gap),
        rows.iter().map(|r| r.gap).fold(f64::MIN, f64::max),
    );
    Ok(())
}

fn name(p: &Path) -> Option<&str> {
    p.file_stem().and_then(|s| s.to_str())
}

/// Orders X instances by size (`X-n101` before `X-n1001`), others by name.
fn sort_key(p: &Path) -> (usize, String) {
    let n = name(p).unwrap_or_default().to_owned();
    let size = n
        .strip_prefix("X-n")
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (size, n)
}
