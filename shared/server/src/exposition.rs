//! The two text expositions of Prometheus metrics, and the choice between them.
//!
//! `prometheus-client` writes OpenMetrics. Prometheus asks for it, but `curl`, `promtool
//! check metrics` and older scrapers expect the Prometheus text format 0.0.4, so every
//! server negotiates ([`Format::negotiate`]) and converts ([`open_metrics_to_text`]).

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, for scrapers that ask for `application/openmetrics-text`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`), for everyone else.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics only when it names it.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_open_metrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut params = range.split(';').map(str::trim);
                let media = params.next().unwrap_or_default();
                // `q=0` means "not this one".
                let refused = params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_open_metrics {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrite an OpenMetrics exposition (without its `# EOF`) as Prometheus text 0.0.4.
///
/// The samples are the same in both; the metadata differs. In OpenMetrics a counter family
/// is named without its `_total` suffix and its samples carry it, while in 0.0.4 the
/// `HELP` and `TYPE` lines name the samples themselves, so a counter's metadata gets the
/// suffix (likewise `_info` for an info family, a gauge in 0.0.4). `UNIT` lines have no
/// 0.0.4 counterpart and are dropped, as is `unknown`, which 0.0.4 calls `untyped`.
pub fn open_metrics_to_text(open_metrics: &str) -> String {
    let renamed = |family: &str, kind: &str| match kind {
        "counter" => Some((format!("{family}_total"), "counter")),
        "info" => Some((format!("{family}_info"), "gauge")),
        "unknown" => Some((family.to_owned(), "untyped")),
        _ => None,
    };
    // Family name to (0.0.4 name, 0.0.4 type), from the `TYPE` lines, which follow `HELP`.
    let mut families = std::collections::HashMap::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((family, kind)) = rest.split_once(' ')
            && let Some(text) = renamed(family, kind)
        {
            families.insert(family.to_owned(), text);
        }
    }
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        let metadata = line
            .strip_prefix("# HELP ")
            .map(|rest| ("HELP", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("TYPE", rest)));
        match metadata {
            _ if line.starts_with("# UNIT ") || line == "# EOF" => continue,
            Some((kind, rest)) => {
                let (family, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                match families.get(family) {
                    Some((name, text_type)) if kind == "TYPE" => {
                        out.push_str(&format!("# TYPE {name} {text_type}"));
                    }
                    Some((name, _)) => out.push_str(&format!("# HELP {name} {tail}")),
                    None => out.push_str(line),
                }
            }
            // 0.0.4 has no exemplars: a sample line ends at its value (and timestamp).
            None => out.push_str(line.split_once(" # ").map_or(line, |(sample, _)| sample)),
        }
        out.push('\n');
    }
    out
}
