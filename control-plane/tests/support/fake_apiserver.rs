//! An in-process fake Kubernetes API server that a real `kube::Client` talks to over HTTP.
//!
//! It implements what the controller uses, with the semantics that matter for it:
//! - typed REST paths (`/api/v1/...`, `/apis/{group}/{version}/...`), namespaced or not;
//! - GET, LIST (label selectors with `=`, `==`, `!=`, `in`, `notin`, `exists`, `!key`; field
//!   selectors on `metadata.name`/`metadata.namespace`) and WATCH streaming newline-delimited
//!   events from a `resourceVersion`, with periodic bookmarks and selector-aware
//!   ADDED/DELETED translation, all over one global, monotonically increasing resourceVersion;
//! - POST (create, 409 AlreadyExists), PUT (replace, 409 Conflict on a stale resourceVersion);
//! - PATCH: server-side apply (`application/apply-patch+yaml`, merged into the object, created
//!   if absent, field manager recorded in `managedFields`), JSON merge patch (with the
//!   `metadata.resourceVersion` precondition) and JSON patch (`test` failures are 422);
//! - the `/status` subresource (only status changes; main-resource writes keep status), and
//!   `generation` bumps only on non-metadata, non-status changes; a write that changes
//!   nothing is a no-op (no new resourceVersion, no watch event), as on a real server;
//! - DELETE honouring finalizers (deletionTimestamp first, removal when they are gone) and
//!   owner-reference garbage collection (foreground-less, immediate, recursive).
//!
//! Every request is recorded so tests can count writes, and faults can be injected: all
//! requests fail with 500, or every open watch stream is cut.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Resource plural, e.g. `daemonsets`.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// Object name, if the path named one.
    pub name: Option<String>,
    /// Whether this was a watch.
    pub watch: bool,
}

impl Recorded {
    /// Whether the request may change state.
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

#[derive(Clone, Copy)]
struct Kind {
    kind: &'static str,
    namespaced: bool,
    status_subresource: bool,
}

fn kind_of(plural: &str) -> Option<Kind> {
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
struct Target {
    /// `v1` or `apps/v1`.
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn resource(&self) -> String {
        format!("{}/{}", self.api_version, self.plural)
    }
}

fn parse_path(path: &str) -> Option<Target> {
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

type Key = (String, String, String);

/// One committed change, the unit of the watch log.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    resource: String,
    namespace: String,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Change>,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    requests: Mutex<Vec<Recorded>>,
    fail: AtomicBool,
    cut: watch::Sender<u64>,
}

/// A running fake API server.
pub struct FakeApiServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(body)).into_response()
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Selectors

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<String> {
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

fn parse_set(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn parse_selector(s: &str) -> ApiResult<Vec<Req>> {
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

fn selector_matches(reqs: &[Req], get: impl Fn(&str) -> Option<String>) -> bool {
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
struct Filter {
    namespace: Option<String>,
    labels: Vec<Req>,
    fields: Vec<Req>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
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

// ---------------------------------------------------------------------------------------
// JSON helpers

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn without_meta_and_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

fn finalizers_empty(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty())
}

// ---------------------------------------------------------------------------------------
// The store

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    fn commit(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Option<Value> {
        self.rv += 1;
        let rv = self.rv.to_string();
        let mut new = new;
        match &mut new {
            Some(obj) => {
                obj["metadata"]["resourceVersion"] = json!(rv);
                self.objects.insert(key.clone(), obj.clone());
            }
            None => {
                self.objects.remove(key);
            }
        }
        let change = Change {
            rv: self.rv,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            old: old.clone(),
            new: new.clone(),
        };
        self.log.push(change.clone());
        let _ = tx.send(change);
        new
    }

    /// Deletes an object (or marks it while finalizers remain) and collects its dependents.
    fn delete(&mut self, tx: &broadcast::Sender<Change>, key: &Key) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        if !finalizers_empty(&old) {
            if old["metadata"]["deletionTimestamp"].is_null() {
                let mut marked = old.clone();
                marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                return self.commit(tx, key, Some(old), Some(marked));
            }
            return Some(old);
        }
        self.remove(tx, key, old.clone());
        Some(old)
    }

    fn remove(&mut self, tx: &broadcast::Sender<Change>, key: &Key, old: Value) {
        self.commit(tx, key, Some(old.clone()), None);
        let Some(uid) = old["metadata"]["uid"].as_str().map(str::to_owned) else {
            return;
        };
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dep in dependents {
            self.delete(tx, &dep);
        }
    }

    fn create(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        target: &Target,
        mut obj: Value,
    ) -> ApiResult<Value> {
        if self.objects.contains_key(key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {:?} already exists", target.plural, key.2),
            ));
        }
        let kind = kind_of(&target.plural)
            .ok_or_else(|| ApiError::new(404, "NotFound", "unknown resource"))?;
        self.uid += 1;
        obj["apiVersion"] = json!(target.api_version);
        obj["kind"] = json!(kind.kind);
        let meta = &mut obj["metadata"];
        meta["name"] = json!(key.2);
        if kind.namespaced {
            meta["namespace"] = json!(key.1);
        }
        meta["uid"] = json!(format!("uid-{}", self.uid));
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
        }
        Ok(self.commit(tx, key, None, Some(obj)).unwrap_or(Value::Null))
    }

    /// Stores `next` as the new state of an existing object, keeping server-owned fields.
    fn update(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        target: &Target,
        old: Value,
        mut next: Value,
    ) -> Value {
        let kind = kind_of(&target.plural);
        let status_only = target.subresource.as_deref() == Some("status");
        if status_only {
            let status = next["status"].clone();
            next = old.clone();
            next["status"] = status;
        } else if kind.is_some_and(|k| k.status_subresource) {
            next["status"] = old["status"].clone();
            if next["status"].is_null()
                && let Some(m) = next.as_object_mut()
            {
                m.remove("status");
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        next["apiVersion"] = old["apiVersion"].clone();
        next["kind"] = old["kind"].clone();
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bump = !status_only && without_meta_and_status(&old) != without_meta_and_status(&next);
        next["metadata"]["generation"] = json!(if bump { generation + 1 } else { generation });
        if comparable(&old) == comparable(&next) {
            return old;
        }
        if !old["metadata"]["deletionTimestamp"].is_null() && finalizers_empty(&next) {
            self.remove(tx, key, next.clone());
            return next;
        }
        self.commit(tx, key, Some(old), Some(next))
            .unwrap_or(Value::Null)
    }
}

fn record_manager(obj: &mut Value, manager: Option<&str>, operation: &str) {
    let Some(manager) = manager else { return };
    let entry = json!({
        "manager": manager, "operation": operation, "apiVersion": obj["apiVersion"].clone(),
        "fieldsType": "FieldsV1", "time": now_rfc3339(),
    });
    let fields = &mut obj["metadata"]["managedFields"];
    if !fields.is_array() {
        *fields = json!([]);
    }
    if let Some(list) = fields.as_array_mut() {
        list.retain(|e| !(e["manager"] == manager && e["operation"] == operation));
        list.push(entry);
    }
}

// ---------------------------------------------------------------------------------------
// HTTP handling

fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            form_urlencoded_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
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

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v.clone())).into_response()
}

fn parse_body(bytes: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(bytes)
        .or_else(|_| serde_yaml::from_slice(bytes))
        .map_err(|e| ApiError::new(400, "BadRequest", format!("undecodable body: {e}")))
}

async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    match dispatch(&shared, &parts.method, &parts.uri, &parts.headers, bytes).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let target = parse_path(uri.path())
        .ok_or_else(|| ApiError::new(404, "NotFound", format!("no route {}", uri.path())))?;
    let query = query_map(uri);
    let is_watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Recorded {
            method: method.to_string(),
            resource: target.plural.clone(),
            subresource: target.subresource.clone(),
            name: target.name.clone(),
            watch: is_watch,
        });
    if shared.fail.load(Ordering::SeqCst) {
        return Err(ApiError::new(500, "InternalError", "injected fault"));
    }
    let kind = kind_of(&target.plural).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("unknown resource {}", target.plural),
        )
    })?;
    let filter = Filter {
        namespace: target.namespace.clone(),
        labels: parse_selector(query.get("labelSelector").map_or("", String::as_str))?,
        fields: parse_selector(query.get("fieldSelector").map_or("", String::as_str))?,
    };
    let field_manager = query.get("fieldManager").map(String::as_str);
    let key = |name: &str| -> Key {
        (
            target.resource(),
            target.namespace.clone().unwrap_or_default(),
            name.to_owned(),
        )
    };

    match (method.clone(), target.name.clone()) {
        (Method::GET, None) if is_watch => {
            let since = query
                .get("resourceVersion")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(300);
            Ok(watch_response(
                shared, &target, filter, since, timeout, kind,
            ))
        }
        (Method::GET, None) => {
            let store = shared.lock();
            let resource = target.resource();
            let items: Vec<Value> = store
                .objects
                .iter()
                .filter(|((r, _, _), o)| *r == resource && filter.matches(o))
                .map(|(_, o)| o.clone())
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "apiVersion": target.api_version, "kind": format!("{}List", kind.kind),
                    "metadata": {"resourceVersion": store.rv.to_string()}, "items": items,
                }),
            ))
        }
        (Method::GET, Some(name)) => {
            let store = shared.lock();
            let obj = store.objects.get(&key(&name)).ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("{} {name:?} not found", target.plural),
                )
            })?;
            Ok(json_response(StatusCode::OK, obj))
        }
        (Method::POST, None) => {
            let mut obj = parse_body(&bytes)?;
            let name = obj["metadata"]["name"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name is required"))?;
            record_manager(&mut obj, field_manager, "Update");
            let mut store = shared.lock();
            let created = store.create(&shared.changes, &key(&name), &target, obj)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, Some(name)) => {
            let mut obj = parse_body(&bytes)?;
            let mut store = shared.lock();
            let k = key(&name);
            let old = store
                .objects
                .get(&k)
                .cloned()
                .ok_or_else(|| ApiError::new(404, "NotFound", format!("{name:?} not found")))?;
            let sent = obj["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            if let Some(sent) = sent
                && Some(sent.as_str()) != old["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    "the object has been modified",
                ));
            }
            record_manager(&mut obj, field_manager, "Update");
            let updated = store.update(&shared.changes, &k, &target, old, obj);
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let patch = parse_body(&bytes)?;
            let mut store = shared.lock();
            let k = key(&name);
            let old = store.objects.get(&k).cloned();
            let (mut next, old) = match (content_type.as_str(), old) {
                (ct, None) if ct.starts_with("application/apply-patch") => {
                    if target.subresource.is_some() {
                        return Err(ApiError::new(
                            404,
                            "NotFound",
                            format!("{name:?} not found"),
                        ));
                    }
                    let mut obj = patch;
                    record_manager(&mut obj, field_manager, "Apply");
                    let created = store.create(&shared.changes, &k, &target, obj)?;
                    return Ok(json_response(StatusCode::CREATED, &created));
                }
                (_, None) => {
                    return Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("{name:?} not found"),
                    ));
                }
                (ct, Some(old)) if ct.starts_with("application/apply-patch") => {
                    let mut next = old.clone();
                    merge(&mut next, &patch);
                    record_manager(&mut next, field_manager, "Apply");
                    (next, old)
                }
                (ct, Some(old)) if ct.starts_with("application/merge-patch") => {
                    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
                    {
                        return Err(ApiError::new(
                            409,
                            "Conflict",
                            "the object has been modified",
                        ));
                    }
                    let mut next = old.clone();
                    merge(&mut next, &patch);
                    record_manager(&mut next, field_manager, "Update");
                    (next, old)
                }
                (ct, Some(old)) if ct.starts_with("application/json-patch") => {
                    // As the real API server does, `test` of a missing path against null passes
                    // (kube's finalizer helper relies on that for "no finalizers yet").
                    let ops: Vec<Value> = patch
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|op| {
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && op["path"]
                                    .as_str()
                                    .is_some_and(|p| old.pointer(p).is_none()))
                        })
                        .collect();
                    let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                        .map_err(|e| {
                            ApiError::new(400, "BadRequest", format!("bad json patch: {e}"))
                        })?;
                    let mut next = old.clone();
                    json_patch::patch(&mut next, &ops).map_err(|e| {
                        ApiError::new(422, "Invalid", format!("json patch failed: {e}"))
                    })?;
                    (next, old)
                }
                (ct, Some(_)) => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("unsupported patch type {ct:?}"),
                    ));
                }
            };
            // The patched resourceVersion was only a precondition.
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            if let Some(rv) = old["metadata"]["resourceVersion"].as_str() {
                next["metadata"]["resourceVersion"] = json!(rv);
            }
            let updated = store.update(&shared.changes, &k, &target, old, next);
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::DELETE, Some(name)) => {
            let mut store = shared.lock();
            let deleted = store
                .delete(&shared.changes, &key(&name))
                .ok_or_else(|| ApiError::new(404, "NotFound", format!("{name:?} not found")))?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} {}", uri.path()),
        )),
    }
}

/// Translates a change into the event a watcher with `filter` sees, if any.
fn watch_event(change: &Change, filter: &Filter) -> Option<Value> {
    let old_match = change.old.as_ref().is_some_and(|o| filter.matches(o));
    let new_match = change.new.as_ref().is_some_and(|n| filter.matches(n));
    let (type_, obj) = match (old_match, new_match, &change.new) {
        (_, true, Some(n)) => (if old_match { "MODIFIED" } else { "ADDED" }, n.clone()),
        (true, false, Some(n)) => ("DELETED", n.clone()),
        (true, false, None) => {
            let mut last = change.old.clone()?;
            last["metadata"]["resourceVersion"] = json!(change.rv.to_string());
            ("DELETED", last)
        }
        _ => return None,
    };
    Some(json!({"type": type_, "object": obj}))
}

fn line(v: &Value) -> Result<Bytes, Infallible> {
    let mut s = v.to_string();
    s.push('\n');
    Ok(Bytes::from(s))
}

fn watch_response(
    shared: &Arc<Shared>,
    target: &Target,
    filter: Filter,
    since: u64,
    timeout_secs: u64,
    kind: Kind,
) -> Response {
    let resource = target.resource();
    let api_version = target.api_version.clone();
    // Subscribe and snapshot under the store lock so no change is missed or sent twice.
    let (mut live, backlog, mut last_rv) = {
        let store = shared.lock();
        let live = shared.changes.subscribe();
        let backlog: Vec<Change> = if since == 0 {
            // "Any" version: synthesize ADDED events for the current state.
            store
                .objects
                .iter()
                .filter(|((r, _, _), _)| *r == resource)
                .map(|(_, o)| Change {
                    rv: store.rv,
                    resource: resource.clone(),
                    namespace: String::new(),
                    old: None,
                    new: Some(o.clone()),
                })
                .collect()
        } else {
            store
                .log
                .iter()
                .filter(|c| c.rv > since && c.resource == resource)
                .cloned()
                .collect()
        };
        (live, backlog, store.rv.max(since))
    };
    let mut cut = shared.cut.subscribe();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for change in &backlog {
            if let Some(ev) = watch_event(change, &filter)
                && tx.send(line(&ev)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(Duration::from_millis(500));
        bookmark.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = cut.changed() => return,
                _ = bookmark.tick() => {
                    let ev = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": api_version, "kind": kind.kind,
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    }});
                    if tx.send(line(&ev)).await.is_err() {
                        return;
                    }
                }
                change = live.recv() => match change {
                    Ok(change) => {
                        if change.resource != resource {
                            continue;
                        }
                        last_rv = change.rv;
                        if let Some(ev) = watch_event(&change, &filter)
                            && tx.send(line(&ev)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A lagging watcher is cut, as the API server does; it re-watches.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

impl FakeApiServer {
    /// Starts the server on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let (changes, _) = broadcast::channel(4096);
        let (cut, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes,
            requests: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
            cut,
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::clone(&shared);
        let app = Router::new().fallback(move |req: Request<Body>| handle(Arc::clone(&state), req));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("server url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Makes every request fail with 500 (`true`) or succeed again (`false`).
    pub fn fail_requests(&self, fail: bool) {
        self.shared.fail.store(fail, Ordering::SeqCst);
    }

    /// Ends every open watch stream.
    pub fn cut_watches(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes so far, except to the listed resources (e.g. `leases`, which renew all the time).
    pub fn writes_except(&self, ignored: &[&str]) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && !ignored.contains(&r.resource.as_str()))
            .collect()
    }

    /// The stored object, if any (`namespace` empty for cluster-scoped objects).
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .objects
            .get(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every stored object of a resource (e.g. `events.k8s.io/v1/events`).
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Creates or replaces an object directly (test set-up, not recorded as a request).
    pub fn put(&self, resource: &str, namespace: &str, obj: Value) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (api_version, plural) = resource.rsplit_once('/').expect("resource is gv/plural");
        let target = Target {
            api_version: api_version.to_owned(),
            plural: plural.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: Some(name.clone()),
            subresource: None,
        };
        let key = (resource.to_owned(), namespace.to_owned(), name);
        let mut store = self.shared.lock();
        match store.objects.get(&key).cloned() {
            Some(old) => {
                let mut next = obj;
                next["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                let status = next["status"].clone();
                store.update(&self.shared.changes, &key, &target, old, next.clone());
                if !status.is_null() {
                    // Test set-up may also set status (e.g. a DaemonSet's ready count).
                    let cur = store.objects.get(&key).cloned().expect("just stored");
                    let mut with_status = cur.clone();
                    with_status["status"] = status;
                    let status_target = Target {
                        subresource: Some("status".into()),
                        ..target
                    };
                    store.update(&self.shared.changes, &key, &status_target, cur, with_status);
                }
            }
            None => {
                store
                    .create(&self.shared.changes, &key, &target, obj)
                    .expect("create");
            }
        }
    }

    /// Merges `patch` into an object directly (test set-up; `/status` if `status` is set).
    pub fn merge(&self, resource: &str, namespace: &str, name: &str, patch: Value, status: bool) {
        let (api_version, plural) = resource.rsplit_once('/').expect("resource is gv/plural");
        let target = Target {
            api_version: api_version.to_owned(),
            plural: plural.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: Some(name.to_owned()),
            subresource: status.then(|| "status".to_owned()),
        };
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let mut store = self.shared.lock();
        let Some(old) = store.objects.get(&key).cloned() else {
            panic!("{resource} {namespace}/{name} not found");
        };
        let mut next = old.clone();
        merge(&mut next, &patch);
        store.update(&self.shared.changes, &key, &target, old, next);
    }

    /// Deletes an object directly (finalizers and garbage collection apply).
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        self.shared.lock().delete(&self.shared.changes, &key);
    }
}
