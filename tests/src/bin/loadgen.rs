//! `loadgen`: HTTP load generator for the agent's `/route` endpoint.
//!
//! Picks random points in a bounding box (default: Porto), snaps them once through
//! `/nearest` so every pair is routable (with `--trip-points N`, every request is instead a
//! `/trip` through N of those points), then either
//! - sends at a fixed rate (`--rate N`, open loop: latency is measured from the *scheduled*
//!   send time, so a stalled server cannot hide queueing), or
//! - saturates (`--rate 0`) with `--connections` closed-loop workers,
//!
//! over keep-alive connections, and prints throughput and p50/p99/p99.9 latency of the
//! successful requests, and how many were shed (503), failed otherwise or timed out.
//!
//! At a fixed rate it also prints how far the generator itself fell behind its schedule
//! (`offered_rps`, `send_lag_p50_ms`; the schedule is kept by a thread of its own, see
//! `pace`), and the latency of successful requests counted from when the generator
//! issued each (`issued_*`: includes waiting for a connection of a bounded pool, excludes
//! the generator's own lateness) and from when it was written to a connection (`sent_*`).
//! When the generator shares the machine, the scheduled-time figures measure its own lag
//! as much as the server's.
//!
//! With `--max-in-flight N` on a plain `http` URL the fixed rate goes through N keep-alive
//! connections, each a worker taking the next issued request from one queue (a client's
//! bounded pool), on hyper's connection API: several times cheaper per request than a
//! task and a `reqwest` call each, so at twice an agent's saturation the generator's own
//! core is not what makes requests wait (`https` and the unbounded mode use `reqwest`).
//!
//! With `--pid`, the agent's resident memory, threads and open descriptors are sampled from
//! `/proc` before (idle), during (peak) and `--settle` seconds after the run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use hyper::http;
use rand::{Rng, SeedableRng, rngs::SmallRng};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Agent base URL (`http://127.0.0.1:5000` or `https://...`).
    #[arg(long)]
    url: String,
    /// API key (sent as `Authorization: Bearer`).
    #[arg(long)]
    key: Option<String>,
    /// Requests per second; 0 saturates with `--connections` workers.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections (saturation) / connection pool size (fixed rate).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// `min_lon,min_lat,max_lon,max_lat` of the random points (default: Porto).
    #[arg(long, default_value = "-8.69,41.14,-8.56,41.18")]
    bbox: String,
    /// PEM CA certificate to trust for `https` URLs.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Client timeout per request, in seconds (a request past it counts as timed out).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The agent's process id, to sample its memory, threads and descriptors from `/proc`.
    #[arg(long)]
    pid: Option<u32>,
    /// Fixed rate only: requests in flight at most (so connections at most), as a client
    /// with a bounded pool; a request waiting for one still counts its latency from its
    /// scheduled time. 0: unbounded (a new connection whenever all are busy).
    #[arg(long, default_value_t = 0)]
    max_in_flight: usize,
    /// Seconds to wait after the run before the last `/proc` sample.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Send `/trip` requests through this many of the snapped points instead of two-point
    /// `/route` requests (0: routes).
    #[arg(long, default_value_t = 0)]
    trip_points: usize,
    /// `overview` of the `/route` requests: `false` (no geometry), `simplified` (OSRM's
    /// default) or `full`.
    #[arg(long, default_value = "false", value_parser = ["false", "simplified", "full"])]
    overview: String,
}

/// Resident memory (KiB), threads and open descriptors of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

impl ProcSample {
    fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Self {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
            fds,
        })
    }

    fn max(self, other: Self) -> Self {
        Self {
            rss_kib: self.rss_kib.max(other.rss_kib),
            threads: self.threads.max(other.threads),
            fds: self.fds.max(other.fds),
        }
    }

    fn show(self) -> String {
        format!(
            "rss_mb={:.1} threads={} fds={}",
            self.rss_kib as f64 / 1024.0,
            self.threads,
            self.fds
        )
    }
}

/// What became of one request.
/// Latency of one successful request, counted from three instants.
struct Latency {
    /// When the schedule said to send it.
    scheduled: Duration,
    /// When the generator got round to it (late by its own timer and load).
    issued: Duration,
    /// When it had a connection (after waiting for one of a bounded pool).
    sent: Duration,
}

enum Outcome {
    Ok(Latency),
    Shed,
    Failed,
    TimedOut,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest-rank; the index is within bounds by construction.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The lean fixed-rate client: plain HTTP/1.1 keep-alive connections to one address.
#[derive(Clone)]
struct Pooled {
    address: String,
    /// The `Host` header.
    host: http::HeaderValue,
    /// Length of `--url`'s scheme and authority, before the path.
    base_path: usize,
    auth: Option<http::HeaderValue>,
    timeout: Duration,
}

type Job = (usize, Instant, Instant);

/// Issues `total` jobs `interval` apart from `started` on a thread of its own, so that a
/// fixed rate means what it says: `std::thread::sleep` wakes within the kernel's timer slack
/// (about 50 µs), where tokio's timer rounds every wait up to the next millisecond and so
/// added up to 1.4 ms of the generator's own lateness to every latency counted from the
/// schedule. The thread returns how late each job was issued and how long issuing took.
fn pace(
    started: Instant,
    interval: Duration,
    total: usize,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Job>,
    std::thread::JoinHandle<(Vec<Duration>, Duration)>,
) {
    let (jobs, ticks) = tokio::sync::mpsc::unbounded_channel();
    let pacing = std::thread::spawn(move || {
        let mut lags = Vec::with_capacity(total);
        for i in 0..total {
            let scheduled = started + interval.mul_f64(i as f64);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let issued = Instant::now();
            lags.push(issued - scheduled);
            // The receivers live until every job is taken.
            if jobs.send((i, scheduled, issued)).is_err() {
                break;
            }
        }
        (lags, started.elapsed())
    });
    (ticks, pacing)
}

impl Pooled {
    /// `None` for an `https` URL (that goes through `reqwest`).
    fn new(url: &str, auth: Option<&str>, timeout_s: u64) -> anyhow::Result<Option<Self>> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Ok(None);
        };
        let host = rest.split('/').next().unwrap_or(rest).to_owned();
        Ok(Some(Self {
            base_path: "http://".len() + host.len(),
            host: http::HeaderValue::from_str(&host)?,
            address: host,
            auth: auth.map(http::HeaderValue::from_str).transpose()?,
            timeout: Duration::from_secs(timeout_s),
        }))
    }

    async fn connect(&self) -> Option<SendRequest> {
        let stream = tokio::net::TcpStream::connect(&self.address).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        Some(sender)
    }

    /// One connection of the pool: takes the next issued request until none are left.
    async fn worker(
        self,
        queue: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Job>>>,
        urls: Arc<Vec<String>>,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        let mut sender = None;
        loop {
            let Some((i, scheduled, issued)) = queue.lock().await.recv().await else {
                return out;
            };
            let sent = Instant::now();
            if sender.as_ref().is_none_or(|s: &SendRequest| s.is_closed()) {
                sender = self.connect().await;
            }
            let Some(conn) = sender.as_mut() else {
                out.push(Outcome::Failed);
                continue;
            };
            let url = &urls[i % urls.len()];
            let mut request = http::Request::new(http_body_util::Empty::<bytes::Bytes>::new());
            *request.uri_mut() = match url[self.base_path..].parse() {
                Ok(uri) => uri,
                Err(_) => {
                    out.push(Outcome::Failed);
                    continue;
                }
            };
            let headers = request.headers_mut();
            headers.insert(http::header::HOST, self.host.clone());
            if let Some(auth) = &self.auth {
                headers.insert(http::header::AUTHORIZATION, auth.clone());
            }
            let answer = async {
                let response = conn.send_request(request).await?;
                let status = response.status();
                http_body_util::BodyExt::collect(response.into_body()).await?;
                Ok::<_, hyper::Error>(status)
            };
            out.push(match tokio::time::timeout(self.timeout, answer).await {
                Ok(Ok(status)) if status.is_success() => Outcome::Ok(Latency {
                    scheduled: scheduled.elapsed(),
                    issued: issued.elapsed(),
                    sent: sent.elapsed(),
                }),
                Ok(Ok(status)) if status == 503 => Outcome::Shed,
                Ok(Ok(_)) => Outcome::Failed,
                Ok(Err(_)) => {
                    sender = None;
                    Outcome::Failed
                }
                Err(_) => {
                    // The connection still carries the late answer: start a new one.
                    sender = None;
                    Outcome::TimedOut
                }
            });
        }
    }
}

type SendRequest = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections.max(1))
        .timeout(Duration::from_secs(args.timeout));
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(&pem)?]);
    }
    let client = builder.build()?;
    let auth = args.key.as_ref().map(|k| format!("Bearer {k}"));
    let get = |url: String| {
        let mut req = client.get(url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        req
    };

    let bbox: Vec<f64> = args
        .bbox
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("--bbox must be four numbers")?;
    anyhow::ensure!(bbox.len() == 4, "--bbox must be four numbers");
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut points = Vec::new();
    for _ in 0..2000 {
        if points.len() >= 500 {
            break;
        }
        let lon = rng.random_range(bbox[0]..bbox[2]);
        let lat = rng.random_range(bbox[1]..bbox[3]);
        let r = get(format!("{}/nearest/v1/driving/{lon:.6},{lat:.6}", args.url))
            .send()
            .await?;
        if r.status() == 200 {
            let body: serde_json::Value = r.json().await?;
            let loc = &body["waypoints"][0]["location"];
            points.push(format!("{},{}", loc[0], loc[1]));
        }
    }
    anyhow::ensure!(points.len() >= 2, "no routable points in the bbox");
    let urls: Arc<Vec<String>> = Arc::new(if args.trip_points > 0 {
        // Long URLs: fewer distinct ones.
        (0..100)
            .map(|_| {
                let stops: Vec<&str> = (0..args.trip_points)
                    .map(|_| points[rng.random_range(0..points.len())].as_str())
                    .collect();
                format!(
                    "{}/trip/v1/driving/{}?overview=false",
                    args.url,
                    stops.join(";")
                )
            })
            .collect()
    } else {
        (0..10_000)
            .map(|_| {
                let a = &points[rng.random_range(0..points.len())];
                let b = &points[rng.random_range(0..points.len())];
                format!(
                    "{}/route/v1/driving/{a};{b}?overview={}",
                    args.url, args.overview
                )
            })
            .collect()
    });

    let idle = args.pid.and_then(ProcSample::read);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = args.pid.map(|pid| {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = ProcSample::default();
            while sampling.load(Ordering::Relaxed) {
                if let Some(s) = ProcSample::read(pid) {
                    peak = peak.max(s);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    });
    let errors = Arc::new(AtomicUsize::new(0));
    let (shed, timed_out) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let duration = Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::new();
    // Fixed rate only: latency from the actual send, and how late each send was.
    let mut from_sent: Vec<Duration> = Vec::new();
    let mut from_issued: Vec<Duration> = Vec::new();
    let mut send_lag: Vec<Duration> = Vec::new();
    let mut offered = None;
    if args.rate == 0 {
        let mut workers = Vec::new();
        for w in 0..args.connections.max(1) {
            let (urls, errors, shed) = (urls.clone(), errors.clone(), shed.clone());
            let (client, auth) = (client.clone(), auth.clone());
            workers.push(tokio::spawn(async move {
                let mut local = Vec::new();
                let mut i = w * 7919;
                while started.elapsed() < duration {
                    let mut req = client.get(&urls[i % urls.len()]);
                    if let Some(a) = &auth {
                        req = req.header("authorization", a);
                    }
                    i += 1;
                    let t = Instant::now();
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            local.push(t.elapsed());
                        }
                        Ok(r) if r.status() == 503 => {
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                local
            }));
        }
        for w in workers {
            latencies.extend(w.await?);
        }
    } else {
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
        let total = (duration.as_secs_f64() * f64::from(args.rate)) as usize;
        let lean = (args.max_in_flight > 0)
            .then(|| Pooled::new(&args.url, auth.as_deref(), args.timeout))
            .transpose()?
            .flatten();
        let mut tasks = Vec::with_capacity(total);
        let (mut ticks, pacing) = pace(started, interval, total);
        if let Some(lean) = lean {
            let queue = Arc::new(tokio::sync::Mutex::new(ticks));
            let workers: Vec<_> = (0..args.max_in_flight)
                .map(|_| tokio::spawn(lean.clone().worker(queue.clone(), urls.clone())))
                .collect();
            for w in workers {
                tasks.push(w);
            }
        } else {
            let pool = (args.max_in_flight > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(args.max_in_flight)));
            while let Some((i, scheduled, issued)) = ticks.recv().await {
                let request = get(urls[i % urls.len()].clone());
                let pool = pool.clone();
                tasks.push(tokio::spawn(async move {
                    let _permit = match &pool {
                        Some(pool) => Some(pool.clone().acquire_owned().await),
                        None => None,
                    };
                    let sent = Instant::now();
                    vec![match request.send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(_) => Outcome::Ok(Latency {
                                scheduled: scheduled.elapsed(),
                                issued: issued.elapsed(),
                                sent: sent.elapsed(),
                            }),
                            Err(_) => Outcome::Failed,
                        },
                        Ok(r) if r.status() == 503 => Outcome::Shed,
                        Ok(_) => Outcome::Failed,
                        Err(e) if e.is_timeout() => Outcome::TimedOut,
                        Err(_) => Outcome::Failed,
                    }]
                }));
            }
        }
        let outcomes = futures::future::try_join_all(tasks).await?;
        // Not a wait: every task ended, so the job channel closed, so the thread returned.
        let (lags, paced) = pacing
            .join()
            .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
        send_lag = lags;
        offered = Some(total as f64 / paced.as_secs_f64());
        for outcome in outcomes.into_iter().flatten() {
            match outcome {
                Outcome::Ok(l) => {
                    latencies.push(l.scheduled);
                    from_issued.push(l.issued);
                    from_sent.push(l.sent);
                }
                Outcome::Shed => {
                    shed.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Failed => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::TimedOut => {
                    timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "mode={} ok={} shed={} errors={} timed_out={} elapsed_s={:.1} throughput_rps={:.0} p50_ms={:.3} p99_ms={:.3} p99.9_ms={:.3} max_ms={:.3}",
        if args.rate == 0 {
            format!("saturation/{}conn", args.connections)
        } else {
            format!("fixed/{}rps", args.rate)
        },
        latencies.len(),
        shed.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        timed_out.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 99.9)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    if let Some(offered) = offered {
        from_sent.sort();
        from_issued.sort();
        send_lag.sort();
        println!(
            "offered_rps={offered:.0} send_lag_p50_ms={:.3} send_lag_p99_ms={:.3} issued_p50_ms={:.3} issued_p99_ms={:.3} issued_p99.9_ms={:.3} sent_p50_ms={:.3} sent_p99_ms={:.3} sent_p99.9_ms={:.3}",
            ms(percentile(&send_lag, 50.0)),
            ms(percentile(&send_lag, 99.0)),
            ms(percentile(&from_issued, 50.0)),
            ms(percentile(&from_issued, 99.0)),
            ms(percentile(&from_issued, 99.9)),
            ms(percentile(&from_sent, 50.0)),
            ms(percentile(&from_sent, 99.0)),
            ms(percentile(&from_sent, 99.9)),
        );
    }
    sampling.store(false, Ordering::Relaxed);
    if let (Some(pid), Some(sampler)) = (args.pid, sampler) {
        let peak = sampler.await?;
        if let Some(idle) = idle {
            println!("agent idle: {}", idle.show());
        }
        println!("agent peak: {}", peak.show());
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        if let Some(after) = ProcSample::read(pid) {
            println!("agent {}s after: {}", args.settle, after.show());
        }
    }
    Ok(())
}
