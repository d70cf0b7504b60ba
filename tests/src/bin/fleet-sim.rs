//! `fleet-sim`: N simulated agents reporting to a center, in one process (tokio tasks and
//! one shared HTTP client), to measure the center's ingest at fleet scale.
//!
//! Every agent sends real `POST /sync/v1/report` bodies: a metrics window (endpoint
//! counts, a latency histogram), health, a location, and its unacknowledged outbox of plan
//! events, every `--interval-ms` (each agent at a random phase). It keeps its outbox until
//! the center's watermark covers it, exactly as the real agent does, and retries on any
//! failure at its next tick.
//!
//! Faults and storms:
//! - `--partition-share 0.2 --partition-at-s 20 --partition-for-s 30`: that share of the
//!   agents cannot reach the center for a while (their outboxes grow), then all of them
//!   report at once (the reconnect storm) and keep their interval after.
//! - `--backlog 100 --storm`: every agent starts with 100 queued events and all report at
//!   t=0 with no phase: the storm after a fleet-wide partition.
//!
//! Printed every `--print-s`: reports sent, failures, client-side ingest p50/p99 of the
//! period, and the backlog (events queued minus events acknowledged, over all agents).
//! At the end: totals, throughput, latency over the run, how long the storm took to drain
//! (every watermark current), the fleet API's response times (with `--admin-key`), and the
//! center's CPU and RSS (with `--center-pid`, from `/proc`).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use edgeroute_protocol::{
    plans::{NewPlan, Plan},
    sync::{
        EndpointCounts, Event, EventKind, Health, LATENCY_BUCKETS_MS, Location, MetricsWindow,
        Report, ReportAck,
    },
};
use rand::{Rng, SeedableRng, rngs::SmallRng};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Center base URL; repeat it for several replicas (agents are spread over them).
    #[arg(long = "center", required = true)]
    centers: Vec<String>,
    /// Agent token (`Authorization: Bearer`).
    #[arg(long, default_value = "tok")]
    token: String,
    /// Admin key: also time `GET /api/v1/nodes` every `--print-s`.
    #[arg(long)]
    admin_key: Option<String>,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Report interval per agent.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Mean plan events an agent produces per interval.
    #[arg(long, default_value_t = 1.0)]
    plans_per_interval: f64,
    /// Events every agent has queued at start.
    #[arg(long, default_value_t = 0)]
    backlog: u64,
    /// All agents report at t=0 (no random phase): with `--backlog`, the reconnect storm.
    #[arg(long)]
    storm: bool,
    /// Stop as soon as every watermark is current (with `--storm`).
    #[arg(long)]
    until_drained: bool,
    /// Share of the agents partitioned away from the center.
    #[arg(long, default_value_t = 0.0)]
    partition_share: f64,
    /// When the partition starts.
    #[arg(long, default_value_t = 20)]
    partition_at_s: u64,
    /// How long it lasts.
    #[arg(long, default_value_t = 30)]
    partition_for_s: u64,
    /// Most events per report (the agent's batch size).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Client timeout per report.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    print_s: u64,
    /// The center's process ids (repeatable), to sample CPU and RSS from `/proc`.
    #[arg(long = "center-pid")]
    center_pids: Vec<u32>,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// What every agent task adds to.
#[derive(Default)]
struct Shared {
    /// Latencies of successful reports in the current period, microseconds.
    period: Mutex<Vec<u32>>,
    /// Every successful report's latency, microseconds.
    all: Mutex<Vec<u32>>,
    ok: AtomicU64,
    failed: AtomicU64,
    shed: AtomicU64,
    events_acked: AtomicU64,
    /// Sum over agents of queued minus acknowledged events.
    backlog: AtomicU64,
    /// Agents whose watermark is behind what they had queued when the storm began.
    behind: AtomicU64,
}

fn plan_event(node: &str, seq: u64, rng: &mut SmallRng) -> Event {
    let jobs = rng.random_range(5..60);
    Event {
        seq,
        at_ms: now_ms(),
        kind: EventKind::Plan {
            plan: Box::new(Plan {
                id: format!("{node}-{seq}"),
                seq,
                created_at_ms: now_ms(),
                plan: NewPlan {
                    node: node.to_owned(),
                    graph_version: Some("porto-2026-11".into()),
                    graph_checksum: None,
                    solver_version: "fleet-sim".into(),
                    jobs,
                    shipments: 0,
                    vehicles: rng.random_range(1..6),
                    output: serde_json::json!({
                        "code": 0,
                        "summary": {"cost": rng.random_range(1_000..90_000), "routes": 3,
                                    "unassigned": 0, "duration": rng.random_range(1_000..90_000)},
                        "routes": [{"vehicle": 1, "steps": (0..jobs).map(|j| serde_json::json!({"type": "job", "job": j})).collect::<Vec<_>>()}]
                    }),
                    traceparent: None,
                },
            }),
        },
    }
}

fn metrics_window(window_ms: u64, rng: &mut SmallRng) -> MetricsWindow {
    let mut w = MetricsWindow {
        window_ms,
        ..MetricsWindow::default()
    };
    for (name, rate) in [
        ("route", 40),
        ("table", 8),
        ("nearest", 12),
        ("optimize", 1),
    ] {
        let requests = rng.random_range(0..=rate * window_ms / 1000);
        w.endpoints.insert(
            name.into(),
            EndpointCounts {
                requests,
                client_errors: requests / 50,
                server_errors: 0,
                codes: Default::default(),
            },
        );
        for _ in 0..requests.min(200) {
            let bucket = rng.random_range(0..LATENCY_BUCKETS_MS.len() / 2);
            w.latency.counts[bucket] += 1;
        }
    }
    w
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// CPU seconds (user + system) and RSS in KiB of a process.
fn proc_sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the command name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

struct Agent {
    node: String,
    center: String,
    partitioned: bool,
    queued: Vec<Event>,
    next_seq: u64,
    acked: u64,
    rng: SmallRng,
}

impl Agent {
    fn enqueue(&mut self, n: u64) {
        for _ in 0..n {
            let seq = self.next_seq;
            self.next_seq += 1;
            let event = plan_event(&self.node, seq, &mut self.rng);
            self.queued.push(event);
        }
    }

    fn report(&mut self, window_ms: u64, batch: usize) -> Report {
        Report {
            node: self.node.clone(),
            stream: format!("{}-stream", self.node),
            region: "porto".into(),
            boot_id: "sim".into(),
            agent_version: "fleet-sim".into(),
            profiles: Default::default(),
            graph: None,
            health: Health {
                ready: true,
                ..Health::default()
            },
            advertise_url: Some(format!("http://{}.sim:5000", self.node)),
            location: Some(Location {
                lat: 41.1 + self.rng.random_range(0.0..0.1),
                lon: -8.7 + self.rng.random_range(0.0..0.15),
            }),
            metrics: metrics_window(window_ms, &mut self.rng),
            outbox_depth: self.queued.len() as u64,
            events: self.queued.iter().take(batch).cloned().collect(),
        }
    }
}

#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    interval: Duration,
    end: Instant,
    partition: (Instant, Instant),
    batch: usize,
    mean_plans: f64,
    storm: bool,
}

async fn run_agent(
    mut agent: Agent,
    client: reqwest::Client,
    token: Arc<str>,
    shared: Arc<Shared>,
    plan: Schedule,
    stop: Arc<tokio::sync::Notify>,
) {
    let phase = if plan.storm {
        Duration::ZERO
    } else {
        plan.interval.mul_f64(agent.rng.random_range(0.0..1.0))
    };
    let url = format!("{}/sync/v1/report", agent.center.trim_end_matches('/'));
    let mut next = plan.start + phase;
    let mut last_ok = plan.start;
    // Whether this agent counts in `behind` (the storm's drain).
    let mut counted_behind =
        agent.partitioned && !plan.storm || plan.storm && !agent.queued.is_empty();
    let mut target = agent.next_seq - 1;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = stop.notified() => return,
        }
        let now = Instant::now();
        if now >= plan.end {
            return;
        }
        let cut = agent.partitioned && now >= plan.partition.0 && now < plan.partition.1;
        // Poisson-ish: the mean plans per interval, spread as whole events.
        let mut n = plan.mean_plans.floor() as u64;
        if agent
            .rng
            .random_bool((plan.mean_plans.fract()).clamp(0.0, 1.0))
        {
            n += 1;
        }
        agent.enqueue(n);
        shared.backlog.fetch_add(n, Ordering::Relaxed);
        if cut {
            // Once back it must get acknowledged all it queued while cut off; every cut
            // agent comes back at the same instant (the storm).
            target = agent.next_seq - 1;
            next += plan.interval;
            if next >= plan.partition.1 {
                next = plan.partition.1;
            }
            continue;
        }
        let window = now.duration_since(last_ok).as_millis() as u64;
        let body = agent.report(window, plan.batch);
        let t0 = Instant::now();
        let result = client
            .post(&url)
            .bearer_auth(&*token)
            .json(&body)
            .send()
            .await;
        let elapsed = t0.elapsed();
        // A shedding center's Retry-After, honoured as the agent does: plus up to half
        // of it again at random, so the shed agents do not come back together.
        let mut retry_at = None;
        match result {
            Ok(r) if r.status().is_success() => match r.json::<ReportAck>().await {
                Ok(ack) => {
                    let us = elapsed.as_micros().min(u128::from(u32::MAX)) as u32;
                    shared
                        .period
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(us);
                    shared
                        .all
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(us);
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    let before = agent.queued.len();
                    agent.queued.retain(|e| e.seq > ack.acked_seq);
                    let done = (before - agent.queued.len()) as u64;
                    agent.acked = agent.acked.max(ack.acked_seq);
                    shared.events_acked.fetch_add(done, Ordering::Relaxed);
                    shared.backlog.fetch_sub(done, Ordering::Relaxed);
                    last_ok = now;
                    let storm_began = plan.storm || now >= plan.partition.1;
                    if counted_behind && storm_began && agent.acked >= target {
                        counted_behind = false;
                        shared.behind.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                shared.shed.fetch_add(1, Ordering::Relaxed);
                let asked = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                if let Some(asked) = asked {
                    let jitter = (asked / 2).mul_f64(agent.rng.random_range(0.0..1.0));
                    retry_at = Some(Instant::now() + asked + jitter);
                }
            }
            _ => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A partitioned agent that reconnects drains its outbox at once, as the agent does
        // while it has more than a batch queued; otherwise it waits its interval.
        if let Some(at) = retry_at {
            next = at;
        } else if agent.queued.len() > plan.batch {
            next = Instant::now();
        } else {
            next += plan.interval;
            if next < Instant::now() {
                next = Instant::now();
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_s))
        .pool_max_idle_per_host(512)
        .build()?;
    let shared = Arc::new(Shared::default());
    let token: Arc<str> = args.token.clone().into();
    let start = Instant::now() + Duration::from_millis(200);
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let partition_start = start + Duration::from_secs(args.partition_at_s);
    let plan = Schedule {
        start,
        interval,
        end: start + Duration::from_secs(args.duration_s),
        partition: (
            partition_start,
            partition_start + Duration::from_secs(args.partition_for_s),
        ),
        batch: args.batch.max(1),
        mean_plans: args.plans_per_interval.max(0.0),
        storm: args.storm,
    };
    let partitioned = (args.agents as f64 * args.partition_share.clamp(0.0, 1.0)).round() as usize;
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let mut rng = SmallRng::seed_from_u64(args.seed);
    for i in 0..args.agents {
        let mut agent = Agent {
            node: format!("sim-{i:06}"),
            center: args.centers[i % args.centers.len()].clone(),
            partitioned: i < partitioned,
            queued: Vec::new(),
            next_seq: 1,
            acked: 0,
            rng: SmallRng::seed_from_u64(rng.random()),
        };
        agent.enqueue(args.backlog);
        shared.backlog.fetch_add(args.backlog, Ordering::Relaxed);
        if agent.partitioned && !args.storm || args.storm && args.backlog > 0 {
            shared.behind.fetch_add(1, Ordering::Relaxed);
        }
        tasks.spawn(run_agent(
            agent,
            client.clone(),
            token.clone(),
            shared.clone(),
            plan,
            stop.clone(),
        ));
    }
    let cpu_start: Vec<Option<(f64, u64)>> =
        args.center_pids.iter().map(|&p| proc_sample(p)).collect();
    let mut peak_rss = vec![0u64; args.center_pids.len()];
    println!(
        "fleet-sim: {} agents ({} partitioned), every {} ms, {} s, backlog {}, storm {}",
        args.agents, partitioned, args.interval_ms, args.duration_s, args.backlog, args.storm
    );
    println!("   t_s  reports   fail   503  p50_ms  p99_ms  backlog  behind  nodes_api_ms");
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(args.print_s)).into(),
        Duration::from_secs(args.print_s.max(1)),
    );
    // A storm can hold this task past several periods: print one line for them, not a
    // burst of near-empty lines.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut api_ms = Vec::new();
    let probe = match (&args.admin_key, args.centers.first()) {
        (Some(key), Some(center)) => Some(edgeroute_tests::api_probe::ApiProbe::start(
            format!("{}/api/v1/nodes", center.trim_end_matches('/')),
            key.clone(),
            Duration::from_secs(args.timeout_s),
        )?),
        _ => None,
    };
    let storm_from = if args.storm { start } else { plan.partition.1 };
    let mut drained_at: Option<Duration> = None;
    let mut last_ok = 0;
    loop {
        tick.tick().await;
        let t = start.elapsed();
        let mut period =
            std::mem::take(&mut *shared.period.lock().unwrap_or_else(|e| e.into_inner()));
        period.sort_unstable();
        let behind = shared.behind.load(Ordering::Relaxed);
        if drained_at.is_none()
            && behind == 0
            && Instant::now() >= storm_from
            && (args.storm || partitioned > 0)
        {
            drained_at = Some(Instant::now().duration_since(storm_from));
        }
        let api = match &probe {
            Some(probe) => match probe.time().await {
                Some(ms) => {
                    api_ms.push(ms);
                    format!("{ms:.1}")
                }
                None => "error".into(),
            },
            None => "-".into(),
        };
        for (i, &pid) in args.center_pids.iter().enumerate() {
            if let Some((_, rss)) = proc_sample(pid) {
                peak_rss[i] = peak_rss[i].max(rss);
            }
        }
        let ok = shared.ok.load(Ordering::Relaxed);
        println!(
            "{:6.1} {:8} {:6} {:5} {:7.1} {:7.1} {:8} {:7}  {}",
            t.as_secs_f64(),
            ok - last_ok,
            shared.failed.load(Ordering::Relaxed),
            shared.shed.load(Ordering::Relaxed),
            percentile(&period, 0.5),
            percentile(&period, 0.99),
            shared.backlog.load(Ordering::Relaxed),
            behind,
            api
        );
        last_ok = ok;
        if t >= Duration::from_secs(args.duration_s) || args.until_drained && drained_at.is_some() {
            break;
        }
    }
    stop.notify_waiters();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = std::mem::take(&mut *shared.all.lock().unwrap_or_else(|e| e.into_inner()));
    all.sort_unstable();
    let ok = shared.ok.load(Ordering::Relaxed);
    println!("--- summary");
    println!(
        "reports ok {ok} ({:.0}/s), events acked {} ({:.0}/s), failed {}, 503 {}",
        ok as f64 / elapsed,
        shared.events_acked.load(Ordering::Relaxed),
        shared.events_acked.load(Ordering::Relaxed) as f64 / elapsed,
        shared.failed.load(Ordering::Relaxed),
        shared.shed.load(Ordering::Relaxed)
    );
    println!(
        "ingest latency (client side) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    println!(
        "backlog at end {} events; agents still behind the storm {}",
        shared.backlog.load(Ordering::Relaxed),
        shared.behind.load(Ordering::Relaxed)
    );
    match drained_at {
        Some(d) => println!(
            "every watermark current {:.1} s after the storm began (sampled every {} s)",
            d.as_secs_f64(),
            args.print_s
        ),
        None if args.storm || partitioned > 0 => println!("the storm did not drain within the run"),
        None => {}
    }
    if !api_ms.is_empty() {
        api_ms.sort_by(f64::total_cmp);
        println!(
            "GET /api/v1/nodes: {} calls, median {:.1} ms, max {:.1} ms",
            api_ms.len(),
            api_ms[api_ms.len() / 2],
            api_ms[api_ms.len() - 1]
        );
    }
    for (i, &pid) in args.center_pids.iter().enumerate() {
        if let (Some((cpu0, _)), Some((cpu1, rss))) = (cpu_start[i], proc_sample(pid)) {
            println!(
                "center pid {pid}: CPU {:.0}% of one core on average, RSS now {} MiB, peak sampled {} MiB",
                (cpu1 - cpu0) / elapsed * 100.0,
                rss / 1024,
                peak_rss[i].max(rss) / 1024
            );
        }
    }
    Ok(())
}
