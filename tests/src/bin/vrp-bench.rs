//! Quality benchmark of the VRP solver on the instances in `shared/data/vrp/`: per instance
//! and on average, vehicles used, distance, best-known solution and gap.
//!
//! ```text
//! cargo run --release -p edgeroute-tests --bin vrp-bench -- --family solomon --budget-ms 1000
//! cargo run --release -p edgeroute-tests --bin vrp-bench -- --url http://127.0.0.1:8080
//! ```
//!
//! By default the solver (`edgeroute-vrp`) is called in-process. With `--url` every instance is
//! posted to a running agent's `POST /optimize` as VROOM JSON with custom matrices, and the
//! routes it answers are mapped back and checked, so the figures are those of the product
//! end to end (JSON, conversion, solve, plan stored durably before the answer).
//!
//! Solomon is compared with `solomon_bks_distance_objective.csv` (the solver minimises
//! distance, not vehicles first); Homberger and X with `bks.csv`. Every solution goes
//! through the independent feasibility checker; an infeasible one fails the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use edgeroute_protocol::vroom;
use edgeroute_tests::vrp_instances::{BenchInstance, Family, load, load_bks};
use edgeroute_vrp::vroom::{to_input, to_solution};
use edgeroute_vrp::{Problem, Solution, SolveOptions, check_feasibility, solve};

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
    /// Seed of the solver (in-process only; the agent uses its own).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Base URL of a running agent (`http://127.0.0.1:8080`): solve through its
    /// `POST /optimize` instead of in-process.
    #[arg(long)]
    url: Option<String>,
    /// Bearer key for the agent, when it requires one.
    #[arg(long, env = "EDGEROUTE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Fixed cost of every vehicle: a large value makes the solver use fewer vehicles first
    /// (the hierarchical objective of Gehring & Homberger's best-known solutions).
    #[arg(long, default_value_t = 0)]
    vehicle_fixed_cost: i64,
}

/// Where instances are solved.
enum Solver {
    /// The engine, in this process.
    InProcess { seed: u64, threads: usize },
    /// A running agent's `POST /optimize`.
    Http {
        runtime: tokio::runtime::Runtime,
        client: reqwest::Client,
        url: String,
        api_key: Option<String>,
    },
}

impl Solver {
    fn new(args: &Args) -> Result<Self> {
        let Some(base) = &args.url else {
            return Ok(Self::InProcess {
                seed: args.seed,
                threads: args.threads,
            });
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(Self::Http {
            runtime,
            client,
            url: format!("{}/optimize", base.trim_end_matches('/')),
            api_key: args.api_key.clone(),
        })
    }

    /// Solves `problem` within `budget`; over HTTP the answer is mapped back to a
    /// [`Solution`] with every figure the agent reported.
    fn solve(&self, problem: &Problem, budget: Duration) -> Result<Solution> {
        match self {
            Self::InProcess { seed, threads } => {
                let options = SolveOptions {
                    time_limit: budget,
                    seed: *seed,
                    threads: *threads,
                    max_iterations: None,
                };
                Ok(solve(problem, &options)?)
            }
            Self::Http {
                runtime,
                client,
                url,
                api_key,
            } => {
                let body = serde_json::to_vec(&to_input(problem)?)?;
                let output: vroom::Output = runtime.block_on(async {
                    let mut request = client
                        .post(format!("{url}?time_limit_ms={}", budget.as_millis()))
                        .header("content-type", "application/json")
                        .body(body);
                    if let Some(key) = api_key {
                        request = request.bearer_auth(key);
                    }
                    let response = request.send().await.context("POST /optimize")?;
                    let status = response.status();
                    let text = response.text().await.context("reading the answer")?;
                    if !status.is_success() {
                        bail!("POST /optimize answered {status}: {text}");
                    }
                    serde_json::from_str(&text).context("decoding the VROOM output")
                })?;
                Ok(to_solution(problem, &output)?)
            }
        }
    }
}

struct Row {
    late: f64,
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
    let solver = Solver::new(&args)?;
    println!(
        "{:<16} {:>5} {:>4} {:>11} {:>4} {:>11} {:>7} {:>8} {:>8}",
        "instance", "cust", "veh", "distance", "bks", "bks dist", "gap %", "time ms", "late"
    );
    let mut rows = Vec::new();
    for path in &files {
        let mut inst: BenchInstance = load(path, family)?;
        for v in &mut inst.problem.vehicles {
            v.costs.fixed = args.vehicle_fixed_cost;
        }
        if args.max_customers.is_some_and(|m| inst.customers() > m) {
            continue;
        }
        let best = bks
            .get(&inst.name)
            .with_context(|| format!("{} has no BKS row", inst.name))?;
        let started = Instant::now();
        let solution = solver
            .solve(&inst.problem, budget)
            .with_context(|| format!("solving {}", inst.name))?;
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
            late: inst.exact_lateness(&solution),
            vehicles: BenchInstance::vehicles_used(&solution),
            distance,
            gap: 100.0 * (distance / best.distance - 1.0),
            bks_vehicles: best.vehicles,
        };
        println!(
            "{:<16} {:>5} {:>4} {:>11.2} {:>4} {:>11.2} {:>7.2} {:>8} {:>8.3}",
            inst.name,
            inst.customers(),
            row.vehicles,
            row.distance,
            best.vehicles,
            best.distance,
            row.gap,
            elapsed.as_millis(),
            row.late,
        );
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("no instance matched in {}", dir.display());
    }
    let n = rows.len() as f64;
    let mean = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n;
    println!(
        "mean over {} instances: vehicles {:.2} (bks {:.2}), gap {:.2}%, worst gap {:.2}%, all feasible; \
         {} late with exact distances",
        rows.len(),
        mean(&|r| r.vehicles as f64),
        mean(&|r| f64::from(r.bks_vehicles)),
        mean(&|r| r.gap),
        rows.iter().map(|r| r.gap).fold(f64::MIN, f64::max),
        rows.iter().filter(|r| r.late > 1e-9).count(),
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
