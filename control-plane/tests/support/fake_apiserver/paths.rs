//! Request paths and queries: which resource, namespace, name and subresource a URL names.

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Kind {
    pub(super) kind: &'static str,
    pub(super) namespaced: bool,
    pub(super) status_subresource: bool,
}

pub(super) fn kind_of(plural: &str) -> Option<Kind> {
    let (kind, namespaced, status_subresource) = match plural {
        "nodes" => ("Node", false, true),
        "namespaces" => ("Namespace", false, true),
        "daemonsets" => ("DaemonSet", true, true),
        "deployments" => ("Deployment", true, true),
        "services" => ("Service", true, true),
        "configmaps" => ("ConfigMap", true, false),
        "leases" => ("Lease", true, false),
        "events" => ("Event", true, false),
        "edgeregions" => ("EdgeRegion", true, true),
        _ => return None,
    };
    Some(Kind {
        kind,
        namespaced,
        status_subresource,
    })
}

/// The resource a path addresses.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// `v1` or `apps/v1`.
    pub(super) api_version: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

impl Target {
    pub(super) fn resource(&self) -> String {
        format!("{}/{}", self.api_version, self.plural)
    }
}

pub(super) fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some((*ns).to_owned()), {
            let mut v = vec![*plural];
            v.extend_from_slice(rest);
            v
        }),
        other => (None, other.to_vec()),
    };
    let plural = (*rest.first()?).to_owned();
    Some(Target {
        api_version,
        plural,
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        subresource: rest.get(2).map(|s| (*s).to_owned()),
    })
}

pub(super) fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            form_urlencoded_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

pub(super) fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
