//! Label and field selectors, as the API server parses and applies them.

use serde_json::Value;

use super::{ApiError, ApiResult};

#[derive(Debug, Clone)]
pub(super) enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas outside parentheses.
pub(super) fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

pub(super) fn parse_set(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

pub(super) fn parse_selector(s: &str) -> ApiResult<Vec<Req>> {
    split_top(s)
        .into_iter()
        .map(|part| {
            let p = part.trim();
            if let Some((k, v)) = p.split_once("!=") {
                return Ok(Req::Ne(k.trim().into(), v.trim().into()));
            }
            if let Some((k, v)) = p.split_once("==") {
                return Ok(Req::Eq(k.trim().into(), v.trim().into()));
            }
            if let Some((k, v)) = p.split_once('=') {
                return Ok(Req::Eq(k.trim().into(), v.trim().into()));
            }
            if let Some((k, v)) = p.split_once(" notin ") {
                return Ok(Req::NotIn(k.trim().into(), parse_set(v)));
            }
            if let Some((k, v)) = p.split_once(" in ") {
                return Ok(Req::In(k.trim().into(), parse_set(v)));
            }
            if let Some(k) = p.strip_prefix('!') {
                return Ok(Req::NotExists(k.trim().into()));
            }
            if !p.is_empty() && !p.contains(' ') {
                return Ok(Req::Exists(p.into()));
            }
            Err(ApiError::new(
                400,
                "BadRequest",
                format!("bad selector {p:?}"),
            ))
        })
        .collect()
}

pub(super) fn selector_matches(reqs: &[Req], get: impl Fn(&str) -> Option<String>) -> bool {
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
        Req::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    })
}

#[derive(Debug, Clone, Default)]
pub(super) struct Filter {
    pub(super) namespace: Option<String>,
    pub(super) labels: Vec<Req>,
    pub(super) fields: Vec<Req>,
}

impl Filter {
    pub(super) fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        let labels = |k: &str| meta["labels"][k].as_str().map(str::to_owned);
        let fields = |k: &str| match k {
            "metadata.name" => meta["name"].as_str().map(str::to_owned),
            "metadata.namespace" => meta["namespace"].as_str().map(str::to_owned),
            _ => None,
        };
        selector_matches(&self.labels, labels) && selector_matches(&self.fields, fields)
    }
}
