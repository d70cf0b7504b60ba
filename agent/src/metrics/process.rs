//! The standard `process_*` metrics (the names the Prometheus client libraries export),
//! read from `/proc/self` at scrape time. Elsewhere than on Linux they are left out.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

/// `/proc` reports CPU times in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// user space whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// Collects the process metrics on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    start_time_seconds: Option<f64>,
    threads: i64,
    virtual_bytes: i64,
    resident_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

/// Parse `/proc/self/stat`: CPU time, threads, start time (ticks since boot), virtual size.
fn parse_stat(stat: &str) -> Option<(f64, i64, u64, i64)> {
    // The command name may hold spaces and parentheses: fields are counted after the last `)`.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Field n of proc(5) is at index n - 3 here.
    let field = |n: usize| fields.get(n - 3).copied();
    let utime: f64 = field(14)?.parse().ok()?;
    let stime: f64 = field(15)?.parse().ok()?;
    let threads = field(20)?.parse().ok()?;
    let start_ticks = field(22)?.parse().ok()?;
    let vsize = field(23)?.parse().ok()?;
    Some((
        (utime + stime) / TICKS_PER_SECOND,
        threads,
        start_ticks,
        vsize,
    ))
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn parse_rss(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: boot time in Unix seconds.
fn parse_boot_time(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (cpu_seconds, threads, start_ticks, virtual_bytes) = parse_stat(&stat)?;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    Some(Reading {
        cpu_seconds,
        start_time_seconds: boot.map(|b| b as f64 + start_ticks as f64 / TICKS_PER_SECOND),
        threads,
        virtual_bytes,
        resident_bytes: status.as_deref().and_then(parse_rss),
        // The directory handle of the count is one of them; the client libraries count it
        // too, so the numbers compare.
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| i64::try_from(d.count()).unwrap_or(i64::MAX)),
        max_fds: limits.as_deref().and_then(parse_max_fds),
    })
}

fn gauge<N>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        // A few small reads of kernel memory: cheaper than a hop to the blocking pool.
        let Some(r) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?;
        cpu.encode(metric)?;
        if let Some(start) = r.start_time_seconds {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                start,
            )?;
        }
        gauge(
            &mut encoder,
            "process_threads",
            "Number of OS threads in the process",
            r.threads,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            r.virtual_bytes,
        )?;
        if let Some(rss) = r.resident_bytes {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            )?;
        }
        if let Some(fds) = r.open_fds {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                fds,
            )?;
        }
        if let Some(max) = r.max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (edge route (x)) S 1 2 3 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    12345 987654 321 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((3.0, 7, 12345, 987_654)));
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_is_read() {
        let r = read().unwrap();
        assert!(r.threads >= 1);
        assert!(r.resident_bytes.unwrap() > 0);
        assert!(r.open_fds.unwrap() > 0);
        assert!(r.start_time_seconds.unwrap() > 1.6e9);
    }
}
