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

mod paths;
mod selector;
mod store;
mod watches;

use paths::*;
use selector::{Filter, parse_selector};
use store::*;
use watches::watch_response;

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
// HTTP handling

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
